# Our own code compiles with every warning as an error; third-party headers come in as SYSTEM.
function(iquest_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Werror)
endfunction()
