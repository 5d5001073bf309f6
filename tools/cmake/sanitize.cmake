# Sanitizer and fuzzing builds (docs/fuzzing.md).
#   -DRWG_SANITIZE=ON  everything built with AddressSanitizer and UndefinedBehaviorSanitizer
#                      (g++ or clang); tools/rwg test --sanitize uses it.
#   -DRWG_FUZZ=ON      clang only: the same sanitizers, everything instrumented for libFuzzer's
#                      coverage as well, and the harnesses of tests/fuzz linked with libFuzzer;
#                      every test is built too. tools/rwg test --sanitize and tools/fuzz share
#                      this build (build-sanitize/): one instrumented build runs the suites
#                      and fuzzes.
include_guard(GLOBAL)

option(RWG_SANITIZE "Build with AddressSanitizer and UndefinedBehaviorSanitizer" OFF)
option(RWG_FUZZ "Build the libFuzzer harnesses of tests/fuzz (clang only)" OFF)

# -O1, as AddressSanitizer's documentation advises: a sixth less compile time than -O2 for an
# instrumented source, and reports whose frames match the source.
set(RWG_SANITIZER_FLAGS -O1 -fsanitize=address,undefined -fno-omit-frame-pointer
                        -fno-sanitize-recover=undefined)

if(RWG_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang" OR NOT CMAKE_C_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "RWG_FUZZ needs clang (CC=clang CXX=clang++)")
  endif()
  # The warnings stay on, but clang's differ from g++'s, by which the tree is kept clean.
  list(APPEND RWG_WARNINGS -Wno-error)
  # Coverage feedback in every library; the libFuzzer main only in the harnesses.
  add_compile_options(-fsanitize=fuzzer-no-link ${RWG_SANITIZER_FLAGS})
  add_link_options(-fsanitize=address,undefined)
elseif(RWG_SANITIZE)
  add_compile_options(${RWG_SANITIZER_FLAGS})
  add_link_options(-fsanitize=address,undefined)
endif()
