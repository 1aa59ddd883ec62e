/* Pulls in the TFLite Micro library on board envs that take it from lib_deps.

   PlatformIO's library finder scans firmware/src but not backends/ (tinypipe_build.py builds
   the chosen backend itself), so it would never see infer_tflm.cc's includes. With
   lib_ldf_mode = chain+ it evaluates this #if: the library is built and put on the include
   path only for `--backend tflm` builds (tinypipe_build.py defines both macros then), and AOT
   builds stay free of it. The file compiles to nothing. */
#if defined(TINYPIPE_BACKEND_TFLM) && defined(TINYPIPE_TFLM_LIB)
#include "tensorflow/lite/micro/micro_interpreter.h"
#endif
