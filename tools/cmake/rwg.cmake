# Small helpers shared by every target of the rwg build.
include_guard(GLOBAL)

set(RWG_WARNINGS -Wall -Wextra -Werror -Wno-unused-parameter)
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

# rwg_binary(NAME SRCS ... DEPS ...)
function(rwg_binary name)
  cmake_parse_arguments(ARG "" "" "SRCS;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SRCS})
  target_compile_options(${name} PRIVATE ${RWG_WARNINGS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS})
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/bin)
endfunction()

# rwg_test(NAME SRCS ... DEPS ...): a GoogleTest binary registered with CTest.
function(rwg_test name)
  cmake_parse_arguments(ARG "" "" "SRCS;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SRCS})
  target_compile_options(${name} PRIVATE ${RWG_WARNINGS})
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
