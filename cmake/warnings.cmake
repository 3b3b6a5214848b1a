# Our own code compiles with every warning as an error; third-party headers come in as SYSTEM.
# -Wrestrict is off: GCC 12 reports false positives inside libstdc++'s string concatenation at
# -O2 and above (GCC bug 105651), e.g. for "<" + std::to_string(x) + ">". (Clang, which builds
# the fuzzers, has no such warning.)
function(iquest_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Werror
    $<$<CXX_COMPILER_ID:GNU>:-Wno-restrict>)
endfunction()
