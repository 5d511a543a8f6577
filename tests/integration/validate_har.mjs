// Validates a HAR file with the npm har-validator (HAR 1.2 JSON schema).
// usage: node validate_har.mjs FILE.har  -> prints "valid" (exit 0) or the errors (exit 1).
import fs from 'node:fs';
import validator from 'har-validator';

const har = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
try {
  await validator.har(har);
  console.log('valid');
} catch (e) {
  console.log(JSON.stringify(e.errors ?? e.message, null, 2));
  process.exit(1);
}
