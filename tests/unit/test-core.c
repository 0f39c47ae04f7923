/* Unit tests of the small core modules: buf, error, atomicfile, lock,
 * imapstr and the cyrusdb comparators and format detection. */
#include "harness.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "atomicfile.h"
#include "buf.h"
#include "cyrusdb.h"
#include "error.h"
#include "imapstr.h"
#include "lock.h"

static char *dir;

static void test_buf(void)
{
	struct buf b = BUF_INIT;
	test_begin("buf: empty, add, printf, binary, detach");
	test_assert(b.s != NULL && b.s[0] == '\0' && b.len == 0);
	buf_adds(&b, "abc");
	buf_addch(&b, '\0');
	buf_add(&b, "de", 2);
	test_assert_int(b.len, 6);
	test_assert_mem(b.s, b.len, "abc\0de", 6);
	test_assert(b.s[b.len] == '\0');
	buf_reset(&b);
	for (int i = 0; i < 1000; i++)
		buf_printf(&b, "%d,", i);
	test_assert(b.len > 2000 && !strncmp(b.s, "0,1,2,", 6));
	test_assert(!strcmp(b.s + b.len - 4, "999,"));
	buf_sets(&b, "x  \n");
	buf_rtrim(&b);
	test_assert_str(b.s, "x");
	size_t len;
	char *s = buf_detach(&b, &len);
	test_assert_str(s, "x");
	test_assert_int(len, 1);
	test_assert(b.len == 0 && b.s[0] == '\0');
	free(s);
	buf_release(&b);
	test_end();
}

static void test_error(void)
{
	struct error err = ERROR_INIT;
	test_begin("error: kinds map to sysexits, tempfail wins");
	test_assert_int(error_set(&err, ERR_DATA, "bad %s", "thing"), -1);
	test_assert_str(err.msg, "bad thing");
	test_assert_int(error_exitcode(ERR_USAGE), 64);
	test_assert_int(error_exitcode(ERR_DATA), 65);
	test_assert_int(error_exitcode(ERR_NOINPUT), 66);
	test_assert_int(error_exitcode(ERR_TEMPFAIL), 75);
	test_assert_int(error_exitcode(ERR_CONFIG), 78);
	test_assert_int(error_exitcode(ERR_NONE), 0);
	test_assert_int(error_worst(ERR_DATA, ERR_TEMPFAIL), ERR_TEMPFAIL);
	test_assert_int(error_worst(ERR_DATA, ERR_IO), ERR_DATA);
	test_assert_int(error_worst(ERR_NONE, ERR_IO), ERR_IO);
	error_sys(&err, ERR_IO, ENOENT, "cannot open '%s'", "f");
	test_assert_str(err.msg, "cannot open 'f': No such file or directory");
	test_assert_int(error_kind_from_errno(ENOENT), ERR_NOINPUT);
	test_assert_int(error_kind_from_errno(EACCES), ERR_PERM);
	test_end();
}

static void test_comparators(void)
{
	test_begin("cyrusdb: raw, signed and mailbox comparators");
	test_assert(cyrusdb_compar_raw("a", 1, "b", 1) < 0);
	test_assert(cyrusdb_compar_raw("a", 1, "ab", 2) < 0);
	test_assert(cyrusdb_compar_raw("\xc3", 1, "a", 1) > 0);
	test_assert(cyrusdb_compar_raw("a\0b", 3, "a\0c", 3) < 0);
	test_assert(cyrusdb_compar_raw("x", 1, "x", 1) == 0);
	/* skiplist: signed chars put 0xc3 first */
	test_assert(cyrusdb_compar_signed("\xc3", 1, "a", 1) < 0);
	test_assert(cyrusdb_compar_signed("a", 1, "a b", 3) < 0);
	/* mailbox order: '.' before space and '-', TAB == LF */
	test_assert(cyrusdb_compar_mbox("a.b", 3, "a b", 3) < 0);
	test_assert(cyrusdb_compar_mbox("user.a", 6, "user-a", 6) < 0);
	test_assert(cyrusdb_compar_mbox("a\tb", 3, "a\nb", 3) == 0);
	test_assert(cyrusdb_compar_mbox("a\x01", 2, "a\t", 2) > 0);
	test_assert(cyrusdb_compar_mbox("usEr", 4, "user.a", 6) < 0);
	test_assert(cyrusdb_compar_mbox("ab", 2, "a", 1) > 0);
	for (int c = 0x0b; c < 256; c++)
		if (c != '.')
			test_assert_idx(cyrusdb_mboxsort_map[c] == c, c);
	test_end();
}

static void test_detect(void)
{
	test_begin("cyrusdb: detect by magic, short or unknown files are NULL");
	char *p = xasprintf("%s/detect", dir);
	FILE *f = fopen(p, "w");
	fwrite("\241\002\213\015twoskip file\0\0\0\0\0\0\0\1"
	       "0123456789ab", 1, 36, f);
	fclose(f);
	test_assert_str(cyrusdb_detect(p), "twoskip");
	f = fopen(p, "w");
	fwrite("\241\002\213\015skiplist file\0\0\0\0\0\0\1"
	       "0123456789ab", 1, 36, f);
	fclose(f);
	test_assert_str(cyrusdb_detect(p), "skiplist");
	f = fopen(p, "w");
	fwrite("\241\002\213\015twoskip file", 1, 16, f);
	fclose(f);
	test_assert(cyrusdb_detect(p) == NULL);
	f = fopen(p, "w");
	fputs("user.a\tsomething that is longer than 32 bytes\n", f);
	fclose(f);
	test_assert(cyrusdb_detect(p) == NULL);
	unlink(p);
	test_assert(cyrusdb_detect(p) == NULL);
	struct cyrusdb *db = NULL;
	struct error err = ERROR_INIT;
	test_assert(cyrusdb_open("berkeley", p, 0, &db, &err) != 0);
	test_assert(db == NULL && err.kind == ERR_USAGE);
	free(p);
	test_end();
}

static void test_atomicfile(void)
{
	struct atomicfile af;
	struct error err = ERROR_INIT;
	struct stat st;
	char buf[64];
	test_begin("atomicfile: commit replaces, abort leaves the original");
	char *p = xasprintf("%s/atomic", dir);
	FILE *f = fopen(p, "w");
	fputs("old", f);
	fclose(f);
	chmod(p, 0640);
	test_assert_int(atomicfile_begin(&af, p, 0600, &err), 0);
	test_assert_int(atomicfile_write(&af, "new", 3, &err), 0);
	char *tmp = xstrdup(af.tmppath);
	test_assert(access(tmp, F_OK) == 0);
	atomicfile_abort(&af);
	test_assert(access(tmp, F_OK) < 0);
	f = fopen(p, "r");
	test_assert(fgets(buf, sizeof(buf), f) && !strcmp(buf, "old"));
	fclose(f);
	test_assert_int(atomicfile_begin(&af, p, 0600, &err), 0);
	test_assert_int(atomicfile_write(&af, "new", 3, &err), 0);
	test_assert_int(atomicfile_commit(&af, &err), 0);
	f = fopen(p, "r");
	test_assert(fgets(buf, sizeof(buf), f) && !strcmp(buf, "new"));
	fclose(f);
	test_assert(stat(p, &st) == 0 && (st.st_mode & 0777) == 0640);
	test_assert(access(tmp, F_OK) < 0);
	char *nodir = xasprintf("%s/no/such/dir/file", dir);
	test_assert_int(atomicfile_begin(&af, nodir, 0600, &err), -1);
	test_assert(strstr(err.msg, "cannot create") != NULL);
	free(nodir);
	free(tmp);
	free(p);
	test_end();
}

static void test_lock(void)
{
	struct error err = ERROR_INIT;
	test_begin("lock: exclusive excludes another process, reopen on rename");
	char *p = xasprintf("%s/lockme", dir);
	char *q = xasprintf("%s/lockme.new", dir);
	int fd = open(p, O_RDWR | O_CREAT, 0600);
	test_assert_int(lock_reopen(&fd, p, LOCK_EXCLUSIVE, NULL, &err), 0);
	pid_t pid = fork();
	if (pid == 0) {
		int cfd = open(p, O_RDWR);
		struct error cerr = ERROR_INIT;
		int r = lock_reopen_nonblock(&cfd, p, LOCK_SHARED, NULL, &cerr);
		_exit(r < 0 && cerr.kind == ERR_TEMPFAIL ? 0 : 1);
	}
	int status;
	waitpid(pid, &status, 0);
	test_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	test_assert_int(lock_holder(fd, LOCK_EXCLUSIVE), 0);
	lock_unlock(fd);
	/* The file is replaced by rename: the next lock follows the path. */
	int nfd = open(q, O_RDWR | O_CREAT, 0600);
	struct stat want, got;
	fstat(nfd, &want);
	close(nfd);
	rename(q, p);
	test_assert_int(lock_reopen(&fd, p, LOCK_SHARED, &got, &err), 0);
	test_assert(got.st_ino == want.st_ino);
	lock_unlock(fd);
	close(fd);
	free(p);
	free(q);
	test_end();
}

static void test_imapstr(void)
{
	static const struct {
		const char *in;
		size_t len;
		const char *out;
		size_t outlen;
	} cases[] = {
		{ "", 0, "\"\"", 2 },
		{ "apple", 5, "apple", 5 },
		{ "NIL", 3, "\"NIL\"", 5 },
		{ "a b", 3, "\"a b\"", 5 },
		{ "x\ty", 3, "\"x\ty\"", 5 },
		{ "k\xffz", 3, "{3}\r\nk\xffz", 8 },
		{ "v%y", 3, "{3}\r\nv%y", 8 },
		{ "q\"x", 3, "{3}\r\nq\"x", 8 },
		{ "a\0b", 3, "{3}\r\na\0b", 8 },
		{ "a\x1f", 2, "a\x1f", 2 },
	};
	struct buf b = BUF_INIT;
	test_begin("imapstr: atoms, quoted strings and literals as Cyrus");
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		buf_reset(&b);
		imapstr_append_amap(&b, cases[i].in, cases[i].len);
		test_assert_idx(b.len == cases[i].outlen &&
					!memcmp(b.s, cases[i].out, b.len), i);
	}
	/* 1024 plain bytes are no longer an atom or quotable: a literal. */
	char big[1024];
	memset(big, 'a', sizeof(big));
	buf_reset(&b);
	imapstr_append_amap(&b, big, sizeof(big));
	test_assert(!strncmp(b.s, "{1024}\r\n", 8));

	/* Parsing: atom, quoted with escapes, literal with NUL, errors. */
	static const char input[] = "SET \"a\\\"b\" {3}\r\nx\0y\r\n"
				    "GET {5}\r\nab";
	FILE *f = fmemopen((void *)input, sizeof(input) - 1, "r");
	struct buf w = BUF_INIT, k = BUF_INIT, v = BUF_INIT;
	test_assert_int(imapstr_getword(f, &w), ' ');
	test_assert_str(w.s, "SET");
	test_assert_int(imapstr_getastring(f, &k, 1 << 20), ' ');
	test_assert_str(k.s, "a\"b");
	test_assert_int(imapstr_getastring(f, &v, 1 << 20), '\r');
	test_assert_mem(v.s, v.len, "x\0y", 3);
	test_assert_int(fgetc(f), '\n');
	test_assert_int(imapstr_getword(f, &w), ' ');
	/* a literal running past the end of input */
	test_assert_int(imapstr_getastring(f, &k, 1 << 20), EOF);
	fclose(f);
	static const char bad[] = "{99999999999}\r\n";
	f = fmemopen((void *)bad, sizeof(bad) - 1, "r");
	test_assert_int(imapstr_getastring(f, &k, 1 << 20), EOF);
	fclose(f);
	static const char unterminated[] = "\"abc\n";
	f = fmemopen((void *)unterminated, sizeof(unterminated) - 1, "r");
	test_assert_int(imapstr_getastring(f, &k, 1 << 20), EOF);
	fclose(f);
	buf_release(&b);
	buf_release(&w);
	buf_release(&k);
	buf_release(&v);
	test_end();
}

int main(void)
{
	static void (*const tests[])(void) = {
		test_buf, test_error, test_comparators, test_detect,
		test_atomicfile, test_lock, test_imapstr, NULL,
	};
	dir = test_tmpdir();
	int r = test_run(tests);
	char *cmd = xasprintf("rm -rf '%s'", dir);
	if (system(cmd) != 0)
		r = 1;
	free(cmd);
	free(dir);
	return r;
}
