# Generates C++ (and gRPC) code for the public API with the system protoc and grpc_cpp_plugin.
# Python stubs for the e2e tests are generated into build/python by the same tools.
find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG REQUIRED)
find_program(IQUEST_GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)
find_program(IQUEST_GRPC_PYTHON_PLUGIN grpc_python_plugin)

function(iquest_add_proto_library target proto_root)
  set(generated_dir ${CMAKE_BINARY_DIR}/generated)
  set(python_dir ${CMAKE_BINARY_DIR}/python)
  set(srcs)
  set(python_outputs)
  foreach(proto ${ARGN})
    get_filename_component(stem ${proto} NAME_WE)
    get_filename_component(rel_dir ${proto} DIRECTORY)
    set(out ${generated_dir}/${rel_dir}/${stem})
    list(APPEND srcs ${out}.pb.cc ${out}.grpc.pb.cc)
    add_custom_command(
      OUTPUT ${out}.pb.cc ${out}.pb.h ${out}.grpc.pb.cc ${out}.grpc.pb.h
      COMMAND ${CMAKE_COMMAND} -E make_directory ${generated_dir}
      COMMAND protobuf::protoc --proto_path=${proto_root} --cpp_out=${generated_dir}
              --grpc_out=${generated_dir} --plugin=protoc-gen-grpc=${IQUEST_GRPC_CPP_PLUGIN}
              ${proto_root}/${proto}
      DEPENDS ${proto_root}/${proto}
      COMMENT "protoc ${proto}")
    if(IQUEST_GRPC_PYTHON_PLUGIN)
      set(py ${python_dir}/${rel_dir}/${stem})
      list(APPEND python_outputs ${py}_pb2.py ${py}_pb2_grpc.py)
      add_custom_command(
        OUTPUT ${py}_pb2.py ${py}_pb2_grpc.py
        COMMAND ${CMAKE_COMMAND} -E make_directory ${python_dir}
        COMMAND protobuf::protoc --proto_path=${proto_root} --python_out=${python_dir}
                --grpc_out=${python_dir} --plugin=protoc-gen-grpc=${IQUEST_GRPC_PYTHON_PLUGIN}
                ${proto_root}/${proto}
        DEPENDS ${proto_root}/${proto}
        COMMENT "protoc (python) ${proto}")
    endif()
  endforeach()
  add_library(${target} ${srcs})
  # Generated code is not ours: no -Werror, and its headers come in as SYSTEM.
  target_include_directories(${target} SYSTEM PUBLIC ${generated_dir})
  target_link_libraries(${target} PUBLIC gRPC::grpc++ protobuf::libprotobuf)
  if(python_outputs)
    add_custom_target(${target}_python ALL DEPENDS ${python_outputs})
  endif()
endfunction()
