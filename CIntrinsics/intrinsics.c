/* CIntrinsics is header-only; SwiftPM needs one source file per C target. */
#include "CIntrinsics.h"
