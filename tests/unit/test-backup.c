/* Unit tests of lib/backup_archive.c and lib/backup_manifest.c. */
#include "harness.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "backup_archive.h"
#include "backup_manifest.h"
#include "buf.h"
#include "error.h"

static char *scratch(void)
{
	char tmpl[] = "/tmp/test-backup.XXXXXX";
	char *d = mkdtemp(tmpl);
	return xstrdup(d ? d : "/tmp");
}

static void rm_rf(const char *dir)
{
	char *cmd = xasprintf("rm -rf '%s'", dir);
	if (system(cmd) != 0)
		printf("# cannot remove %s\n", dir);
	free(cmd);
}

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, data, len) != (ssize_t)len)
		printf("# cannot write %s\n", path);
	if (fd >= 0)
		close(fd);
}

static char *read_file(const char *path, size_t *len)
{
	struct buf b = BUF_INIT;
	char tmp[4096];
	ssize_t n;
	int fd = open(path, O_RDONLY);
	while (fd >= 0 && (n = read(fd, tmp, sizeof(tmp))) > 0)
		buf_add(&b, tmp, (size_t)n);
	if (fd >= 0)
		close(fd);
	return buf_detach(&b, len);
}

static const char weird[] = "a\tb\nc\rd\\e\x1f" "f\x7fg\x01h%(i)\xc3\xbc";

static char *make_manifest(const char *dir)
{
	struct backup_manifest_writer w;
	struct error err = ERROR_INIT;
	char *path = xasprintf("%s/manifest", dir);
	test_assert(backup_manifest_begin(&w, path, true, &err) == 0);
	const char *f1[] = { "user.bob.My Folder" };
	backup_manifest_add(&w, "mailbox", 1, f1);
	const char *f2[] = { weird, "" };
	size_t l2[] = { sizeof(weird) - 1, 0 };
	backup_manifest_addn(&w, "entry", 2, f2, l2);
	const char nul[] = { 'x', 0, 'y' };
	const char *f3[] = { nul };
	size_t l3[] = { 3 };
	backup_manifest_addn(&w, "bin", 1, f3, l3);
	uint64_t bytes = 0;
	test_assert(backup_manifest_commit(&w, &bytes, &err) == 0);
	test_assert(bytes > 0);
	return path;
}

static void test_manifest_roundtrip(void)
{
	test_begin("manifest: every byte survives write and load");
	char *dir = scratch();
	char *path = make_manifest(dir);
	struct backup_manifest m;
	struct error err = ERROR_INIT;
	test_assert(backup_manifest_load(path, &m, &err) == 0);
	test_assert_int(m.nrecs, 4); /* magic, mailbox, entry, bin */
	const struct backup_rec *r = backup_manifest_find(&m, "entry");
	test_assert(r != NULL);
	if (r) {
		test_assert_mem(backup_rec_field(&m, r, 1),
				backup_rec_len(&m, r, 1), weird,
				sizeof(weird) - 1);
		test_assert_str(backup_rec_field(&m, r, 2), "");
		test_assert_str(backup_rec_field(&m, r, 9), "");
	}
	r = backup_manifest_find(&m, "bin");
	test_assert(r && backup_rec_len(&m, r, 1) == 3 &&
		    !memcmp(backup_rec_field(&m, r, 1), "x\0y", 3));
	r = backup_manifest_find(&m, "mailbox");
	test_assert(r && !strcmp(backup_rec_field(&m, r, 1),
				 "user.bob.My Folder"));
	backup_manifest_release(&m);
	/* The text is what the format doc says a sysadmin reads. */
	size_t len;
	char *text = read_file(path, &len);
	test_assert(strstr(text, "mailbox\tuser.bob.My Folder\n") != NULL);
	test_assert(strstr(text, "a\\tb\\nc\\rd\\\\e\\x1ff\\x7fg\\x01h%(i)") !=
		    NULL);
	free(text);
	free(path);
	rm_rf(dir);
	free(dir);
	test_end();
}

static void expect_load_error(const char *path, enum error_kind kind,
			      const char *what)
{
	struct backup_manifest m;
	struct error err = ERROR_INIT;
	int r = backup_manifest_load(path, &m, &err);
	test_assert(r < 0);
	test_assert_int(err.kind, kind);
	if (what && !strstr(err.msg, what))
		printf("# message: %s\n", err.msg);
	test_assert(!what || strstr(err.msg, what));
}

/* A manifest whose checksum is right for its (bad) content. */
static void write_signed(const char *path, const char *body)
{
	struct backup_manifest_writer w;
	struct error err = ERROR_INIT;
	/* The writer's own first line, then raw lines. */
	backup_manifest_begin(&w, path, true, &err);
	buf_reset(&w.out);
	buf_adds(&w.out, body);
	backup_manifest_commit(&w, NULL, &err);
}

static void test_manifest_damage(void)
{
	test_begin("manifest: truncated, flipped, garbage, wrong version");
	char *dir = scratch();
	char *path = make_manifest(dir);
	size_t len;
	char *text = read_file(path, &len);
	char *bad = xasprintf("%s/bad", dir);

	expect_load_error(bad, ERR_NOINPUT, NULL);
	write_file(bad, "", 0);
	expect_load_error(bad, ERR_DATA, "no end line");
	write_file(bad, text, len - 46); /* without the end line */
	expect_load_error(bad, ERR_DATA, "no end line");
	write_file(bad, text, len - 1); /* without the last newline */
	expect_load_error(bad, ERR_DATA, "no end line");
	text[30] ^= 1;
	write_file(bad, text, len);
	expect_load_error(bad, ERR_DATA, "checksum mismatch");
	text[30] ^= 1;
	char garbage[4096];
	for (size_t i = 0; i < sizeof(garbage); i++)
		garbage[i] = (char)(i * 7919 % 251);
	write_file(bad, garbage, sizeof(garbage));
	expect_load_error(bad, ERR_DATA, NULL);
	write_signed(bad, "cyrus-backup-manifest\t2\n");
	expect_load_error(bad, ERR_DATA, "format 2");
	write_signed(bad, "something-else\t1\n");
	expect_load_error(bad, ERR_DATA, "not a backup manifest");
	write_signed(bad, "cyrus-backup-manifest\t1\nx\tbad\\q\n");
	expect_load_error(bad, ERR_DATA, "bad escape");
	write_signed(bad, "cyrus-backup-manifest\t1\nx\tbad\\x4\n");
	expect_load_error(bad, ERR_DATA, "bad escape");
	/* A long field is fine. */
	struct buf big = BUF_INIT;
	buf_adds(&big, "cyrus-backup-manifest\t1\nbig\t");
	for (int i = 0; i < 200000; i++)
		buf_addch(&big, 'a' + i % 26);
	buf_addch(&big, '\n');
	write_signed(bad, big.s);
	struct backup_manifest m;
	struct error err = ERROR_INIT;
	test_assert(backup_manifest_load(bad, &m, &err) == 0);
	test_assert(m.nrecs == 2 && backup_rec_len(&m, &m.recs[1], 1) ==
					    200000);
	backup_manifest_release(&m);
	buf_release(&big);
	free(bad);
	free(text);
	free(path);
	rm_rf(dir);
	free(dir);
	test_end();
}

static void test_objects(void)
{
	test_begin("archive: objects by SHA-1, gzip, damage found");
	char *dir = scratch();
	char *adir = xasprintf("%s/a", dir);
	struct backup_archive *ar = NULL;
	struct error err = ERROR_INIT;
	char sha[BACKUP_SHA1_HEX], sha2[BACKUP_SHA1_HEX];
	setenv("CYRUS_TOOLKIT_NOSYNC", "1", 1);
	test_assert(backup_archive_open(adir, BACKUP_OPEN_CREATE, &ar, &err) ==
		    0);
	if (!ar)
		goto out;
	test_assert(backup_object_put_mem(ar, BACKUP_MESSAGES, "abc", 3, sha,
					  &err) == 0);
	test_assert_str(sha, "a9993e364706816aba3e25717850c26c9cd0d89d");
	test_assert(backup_object_put_mem(ar, BACKUP_MESSAGES, "abc", 3, sha2,
					  &err) == 0);
	test_assert_int(ar->new_objects, 1);
	test_assert(backup_archive_sync(ar, &err) == 0);
	test_assert(backup_object_exists(ar, BACKUP_MESSAGES, sha));
	test_assert(!backup_object_exists(ar, BACKUP_FILES, sha));
	struct buf out = BUF_INIT;
	test_assert(backup_object_read(ar, BACKUP_MESSAGES, sha, 3, &out, -1,
				       &err) == 0);
	test_assert_str(out.s, "abc");
	buf_reset(&out);
	test_assert(backup_object_read(ar, BACKUP_MESSAGES, sha, 4, &out, -1,
				       &err) < 0);
	test_assert_int(err.kind, ERR_DATA);
	/* A gzip of other content under that name. */
	struct buf p = BUF_INIT;
	backup_object_path(ar, BACKUP_MESSAGES, sha, &p);
	char *cmd = xasprintf("printf abd | gzip > '%s'", p.s);
	test_assert(system(cmd) == 0);
	free(cmd);
	error_clear(&err);
	test_assert(backup_object_read(ar, BACKUP_MESSAGES, sha, UINT64_MAX,
				       NULL, -1, &err) < 0);
	test_assert(err.kind == ERR_DATA && strstr(err.msg, "damaged"));
	write_file(p.s, "not gzip at all", 15);
	test_assert(backup_object_read(ar, BACKUP_MESSAGES, sha, UINT64_MAX,
				       NULL, -1, &err) < 0);
	test_assert(err.kind == ERR_DATA);
	write_file(p.s, "\x1f\x8b\x08\x00", 4); /* truncated gzip */
	test_assert(backup_object_read(ar, BACKUP_MESSAGES, sha, UINT64_MAX,
				       NULL, -1, &err) < 0);
	test_assert(err.kind == ERR_DATA);
	unlink(p.s);
	test_assert(backup_object_read(ar, BACKUP_MESSAGES, sha, UINT64_MAX,
				       NULL, -1, &err) < 0);
	test_assert_int(err.kind, ERR_NOINPUT);
	buf_release(&p);
	buf_release(&out);
	backup_archive_close(&ar);
	test_assert(ar == NULL);
out:
	free(adir);
	rm_rf(dir);
	free(dir);
	test_end();
}

static void test_parts(void)
{
	test_begin("archive: files in parts, from memory and from a file");
	char *dir = scratch();
	char *adir = xasprintf("%s/a", dir);
	char *f = xasprintf("%s/data", dir);
	struct backup_archive *ar = NULL;
	struct error err = ERROR_INIT;
	static const size_t sizes[] = { 0, 1, 99, 100, 101, 250, 300, 1000 };
	char *data = xmalloc(1000);
	for (int i = 0; i < 1000; i++)
		data[i] = (char)(i * 31 % 253);
	setenv("CYRUS_BACKUP_PART_SIZE", "100", 1);
	test_assert(backup_archive_open(adir, BACKUP_OPEN_CREATE, &ar, &err) ==
		    0);
	for (size_t k = 0; ar && k < ARRAY_SIZE(sizes); k++) {
		size_t len = sizes[k];
		char want[BACKUP_SHA1_HEX];
		backup_sha1_hex(data, len, want);
		write_file(f, data, len);
		for (int from_fd = 0; from_fd < 2; from_fd++) {
			char sha[BACKUP_SHA1_HEX];
			uint64_t size = 0;
			struct backup_part *parts = NULL;
			size_t np = 0;
			int fd = from_fd ? open(f, O_RDONLY) : -1;
			test_assert_idx(backup_object_put_parts(
				ar, BACKUP_FILES, fd, data, len, sha, &size,
				&parts, &np, &err) == 0, k);
			if (fd >= 0)
				close(fd);
			test_assert_idx(!strcmp(sha, want), k);
			test_assert_idx(size == len, k);
			test_assert_idx(np == (len <= 100 ? 0
							  : (len + 99) / 100),
					k);
			backup_archive_sync(ar, &err);
			struct buf all = BUF_INIT;
			uint64_t off = 0;
			for (size_t i = 0; i < np; i++) {
				test_assert_idx(parts[i].offset == off, k);
				off += parts[i].size;
				test_assert_idx(backup_object_read(
					ar, BACKUP_FILES, parts[i].sha1,
					parts[i].size, &all, -1, &err) == 0, k);
			}
			if (!np)
				test_assert_idx(backup_object_read(
					ar, BACKUP_FILES, sha, len, &all, -1,
					&err) == 0, k);
			test_assert_idx(all.len == len &&
					!memcmp(all.s, data, len), k);
			buf_release(&all);
			free(parts);
		}
	}
	unsetenv("CYRUS_BACKUP_PART_SIZE");
	backup_archive_close(&ar);
	free(data);
	free(f);
	free(adir);
	rm_rf(dir);
	free(dir);
	test_end();
}

static void test_not_archives(void)
{
	test_begin("archive: a full non-archive and a newer format refused");
	char *dir = scratch();
	char *f = xasprintf("%s/file", dir);
	struct backup_archive *ar = NULL;
	struct error err = ERROR_INIT;
	write_file(f, "x", 1);
	test_assert(backup_archive_open(dir, BACKUP_OPEN_CREATE, &ar, &err) <
		    0);
	test_assert_int(err.kind, ERR_DATA);
	test_assert(backup_archive_open(dir, BACKUP_OPEN_LIST, &ar, &err) < 0);
	test_assert_int(err.kind, ERR_NOINPUT);
	free(f);
	f = xasprintf("%s/FORMAT", dir);
	write_file(f, "cyrus-backup 99\n", 16);
	test_assert(backup_archive_open(dir, BACKUP_OPEN_LIST, &ar, &err) < 0);
	test_assert(err.kind == ERR_DATA && strstr(err.msg, "99"));
	free(f);
	rm_rf(dir);
	free(dir);
	test_end();
}

static void test_shaset(void)
{
	test_begin("shaset: add, has, growth, bad names");
	struct backup_shaset s = { 0 };
	char hex[41];
	for (int i = 0; i < 5000; i++) {
		snprintf(hex, sizeof(hex), "%040x", i * 2654435761u + 1);
		test_assert_idx(backup_shaset_add(&s, hex), i);
	}
	test_assert_int(s.n, 5000);
	for (int i = 0; i < 5000; i++) {
		snprintf(hex, sizeof(hex), "%040x", i * 2654435761u + 1);
		test_assert_idx(backup_shaset_has(&s, hex), i);
		test_assert_idx(!backup_shaset_add(&s, hex), i);
	}
	test_assert(!backup_shaset_has(&s, "ffffffffffffffffffffffffffffffffffffffff"));
	test_assert(!backup_shaset_add(&s, "xyz"));
	test_assert(!backup_shaset_add(&s, "A9993E364706816ABA3E25717850C26C9CD0D89D"));
	test_assert(!backup_sha1_valid("a9993e364706816aba3e25717850c26c9cd0d89d0"));
	test_assert(backup_sha1_valid("a9993e364706816aba3e25717850c26c9cd0d89d"));
	backup_shaset_release(&s);
	test_end();
}

int main(void)
{
	static void (*const tests[])(void) = {
		test_manifest_roundtrip, test_manifest_damage, test_objects, test_parts,
		test_not_archives, test_shaset, NULL,
	};
	return test_run(tests);
}
