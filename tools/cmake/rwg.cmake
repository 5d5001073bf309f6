# Small helpers shared by every target of the rwg build.
include_guard(GLOBAL)

set(RWG_WARNINGS -Wall -Wextra -Werror -Wno-unused-parameter)

# Debug information: line tables and function names (-g1), which is what backtraces, perf and
# the sanitizers' reports use. Full -g (variables, types) costs about a third more compile time
# for this tree's template-heavy code (gRPC, absl); a build that wants it sets
# -DRWG_FULL_DEBUG_INFO=ON.
option(RWG_FULL_DEBUG_INFO "Full debug information (-g) instead of line tables (-g1)" OFF)
if(NOT RWG_FULL_DEBUG_INFO)
  add_compile_options($<$<CONFIG:RelWithDebInfo,Debug>:-g1>)
endif()

# lld links the ~150 executables (tests, fuzzers, services) three times faster than ld.bfd.
find_program(RWG_LLD ld.lld)
if(RWG_LLD)
  add_link_options(-fuse-ld=lld)
endif()

# The code of the tests themselves (not the libraries they test, which keep the build's
# optimisation) is compiled without optimisation: it is a third of the tree's sources, and -O0
# halves their compile time.
set(RWG_TEST_CODE_OPTIONS -O0)
# clang checks the lock annotations (ABSL_GUARDED_BY and friends, absl::Mutex): a member read
# or written without its mutex fails the build, in every clang build (build-sanitize/ too,
# where other warnings do not).
if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  list(APPEND RWG_WARNINGS -Wthread-safety -Werror=thread-safety)
endif()

# rwg_library(NAME SRCS ... DEPS ...)
function(rwg_library name)
  cmake_parse_arguments(ARG "" "" "SRCS;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SRCS})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR}/proto)
  target_compile_options(${name} PRIVATE ${RWG_WARNINGS})
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
endfunction()

# Every program of bin/ (the services and tools the integration suites start). The whole test
# run's instrumented build makes only these and the fuzzers (tools/rwg, sanitize_build).
if(NOT TARGET rwg_programs)
  add_custom_target(rwg_programs)
endif()

# rwg_binary(NAME SRCS ... DEPS ...)
function(rwg_binary name)
  cmake_parse_arguments(ARG "" "" "SRCS;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SRCS})
  target_compile_options(${name} PRIVATE ${RWG_WARNINGS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS})
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/bin)
  add_dependencies(rwg_programs ${name})
endfunction()

# rwg_test(NAME SRCS ... DEPS ...): a GoogleTest binary registered with CTest.
function(rwg_test name)
  cmake_parse_arguments(ARG "" "" "SRCS;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SRCS})
  target_compile_options(${name} PRIVATE ${RWG_WARNINGS} ${RWG_TEST_CODE_OPTIONS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gmock GTest::gtest_main)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/tests)
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES LABELS unit)
endfunction()

# rwg_proto_library(NAME PROTOS ... DEPS ...): C++ protobuf + gRPC code for the given
# .proto files (paths relative to proto/).
function(rwg_proto_library name)
  cmake_parse_arguments(ARG "" "" "PROTOS;DEPS" ${ARGN})
  set(out ${PROJECT_BINARY_DIR}/proto)
  set(srcs)
  foreach(p ${ARG_PROTOS})
    string(REGEX REPLACE "\\.proto$" "" base ${p})
    set(gen ${out}/${base}.pb.cc ${out}/${base}.pb.h ${out}/${base}.grpc.pb.cc ${out}/${base}.grpc.pb.h)
    add_custom_command(
      OUTPUT ${gen}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${out}
      COMMAND protobuf::protoc --proto_path=${PROJECT_SOURCE_DIR}/proto --cpp_out=${out}
              --grpc_out=${out} --plugin=protoc-gen-grpc=$<TARGET_FILE:gRPC::grpc_cpp_plugin>
              ${PROJECT_SOURCE_DIR}/proto/${p}
      DEPENDS ${PROJECT_SOURCE_DIR}/proto/${p} protobuf::protoc gRPC::grpc_cpp_plugin
      COMMENT "protoc ${p}")
    list(APPEND srcs ${out}/${base}.pb.cc ${out}/${base}.grpc.pb.cc)
  endforeach()
  add_library(${name} STATIC ${srcs})
  target_include_directories(${name} PUBLIC ${out})
  target_link_libraries(${name} PUBLIC protobuf::libprotobuf gRPC::grpc++ ${ARG_DEPS})
endfunction()
