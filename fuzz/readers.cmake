# The fuzz targets of readers above protocols/, each as target:library (the library whose
# reader it drives). Included by fuzz/CMakeLists.txt (libFuzzer) and tests/CMakeLists.txt
# (the kept corpus replayed as fuzz.corpus.<target>).
set(FAULTLINE_FUZZ_READERS
  journal_reader:faultline_recorder
  annotator:faultline_recorder
  profile:faultline_proxy
  control_api:faultline_proxy
  drill:faultline_replay
)
