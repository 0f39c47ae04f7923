/* compat.h: included first by every .c file of the project. */
#ifndef CYRUS_LIB_COMPAT_H
#define CYRUS_LIB_COMPAT_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <sys/types.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#define NORETURN __attribute__((noreturn))
#define UNUSED __attribute__((unused))

#define BUG(...) bug_at(__FILE__, __LINE__, __VA_ARGS__)
NORETURN PRINTF_LIKE(3, 4) void bug_at(const char *file, int line,
				       const char *fmt, ...);

#include "banned.h"

#endif
