// The one include of the PKCS#11 API (OASIS v2.40 as packaged by p11-kit). Only src/hsm includes
// this file: nothing outside the adapter sees a CK_* type.
#pragma once

#include <p11-kit/pkcs11.h>
