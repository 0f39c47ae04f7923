#include "compat.h"
int main(void) { return 0; }
