// The build's version: the project version plus `git describe` at configure time, e.g.
// "0.1.0+c61c3c7-dirty" ("unknown" outside a git checkout). Reported by GetModelInfo, the
// iquest_build_info metric and every manifest.json this build writes.
#pragma once

namespace iquest {

const char* BuildVersion();

}  // namespace iquest
