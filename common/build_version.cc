#include "common/build_version.h"

namespace iquest {

const char* BuildVersion() { return IQUEST_BUILD_VERSION; }

}  // namespace iquest
