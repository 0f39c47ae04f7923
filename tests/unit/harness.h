/*
 * harness.h: the unit-test runner (Dovecot's test-common.h shape).
 *
 *	static void test_buf_add(void)
 *	{
 *		test_begin("buf: add grows and terminates");
 *		...
 *		test_assert(b.len == 3);
 *		test_end();
 *	}
 *	int main(void) { static void (*const tests[])(void) = {
 *		test_buf_add, NULL }; return test_run(tests); }
 *
 * Each test prints one TAP line ("ok N - title" / "not ok N - title" with the
 * failed assertions as comments); test_run() prints "N passed, N failed" and
 * returns non-zero if anything failed.
 */
#ifndef CYRUS_TESTS_HARNESS_H
#define CYRUS_TESTS_HARNESS_H

#include "compat.h"

#include <unistd.h>

#include "xmalloc.h"

static const char *test_title_;
static int test_failures_now_, test_passed_, test_failed_, test_num_;

static inline void test_begin(const char *title)
{
	test_title_ = title;
	test_failures_now_ = 0;
}

static inline void test_fail_(const char *file, int line, const char *what)
{
	printf("# %s:%d: assertion failed: %s\n", file, line, what);
	test_failures_now_++;
}

#define test_assert(expr) \
	do { if (!(expr)) test_fail_(__FILE__, __LINE__, #expr); } while (0)
#define test_assert_idx(expr, i) \
	do { if (!(expr)) { printf("# index %ld\n", (long)(i)); \
		test_fail_(__FILE__, __LINE__, #expr); } } while (0)
#define test_assert_int(a, b) \
	do { long long a_ = (a), b_ = (b); if (a_ != b_) { \
		printf("# %lld != %lld\n", a_, b_); \
		test_fail_(__FILE__, __LINE__, #a " == " #b); } } while (0)
#define test_assert_str(a, b) \
	do { const char *a_ = (a), *b_ = (b); \
		if (!a_ || !b_ || strcmp(a_, b_)) { \
		printf("# '%s' != '%s'\n", a_ ? a_ : "(null)", \
		       b_ ? b_ : "(null)"); \
		test_fail_(__FILE__, __LINE__, #a " == " #b); } } while (0)
#define test_assert_mem(a, alen, b, blen) \
	do { size_t al_ = (alen), bl_ = (blen); \
		if (al_ != bl_ || memcmp((a), (b), al_)) \
		test_fail_(__FILE__, __LINE__, #a " == " #b); } while (0)

static inline void test_end(void)
{
	test_num_++;
	if (test_failures_now_) {
		test_failed_++;
		printf("not ok %d - %s\n", test_num_, test_title_);
	} else {
		test_passed_++;
		printf("ok %d - %s\n", test_num_, test_title_);
	}
	fflush(stdout);
}

static inline int test_run(void (*const tests[])(void))
{
	for (int i = 0; tests[i]; i++)
		tests[i]();
	printf("1..%d\n", test_num_);
	printf("%d passed, %d failed\n", test_passed_, test_failed_);
	return test_failed_ ? 1 : 0;
}

/* A fresh scratch directory under $TMPDIR; malloc'd path, caller frees. */
static inline char *test_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *tmpl = xasprintf("%s/cyrtest.XXXXXX", base ? base : "/tmp");
	if (!mkdtemp(tmpl)) {
		perror("mkdtemp");
		exit(EX_OSERR);
	}
	return tmpl;
}

#endif
