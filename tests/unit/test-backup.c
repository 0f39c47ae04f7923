/* Unit tests of lib/backup_archive.c and lib/backup_manifest.c. */
#include "harness.h"

#include <fcntl.h>
#include <stdarg.h>
#include <sys/stat.h>

#include "backup_archive.h"
#include "backup_manifest.h"
#include "buf.h"
#include "error.h"

static void rm_rf(const char *dir)
{
	char *cmd = xasprintf("rm -rf '%s'", dir);
	if (system(cmd) != 0)
		printf("# cannot remove %s\n", dir);
	free(cmd);
}

/* Runs a shell command made from fmt: true if it exits 0. */
static bool sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static bool sh(const char *fmt, ...)
{
	struct buf cmd = BUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(&cmd, fmt, ap);
	va_end(ap);
	bool ok = system(cmd.s) == 0;
	if (!ok)
		printf("# failed: %s\n", cmd.s);
	buf_release(&cmd);
	return ok;
}

/* A test: its title, a scratch directory dir removed at the end, an
 * archive directory adir in it (not made), an error for the calls. */
struct fixture {
	char *dir, *adir;
	struct error err;
};

static void fx_begin(struct fixture *fx, const char *title)
{
	char tmpl[] = "/tmp/test-backup.XXXXXX";
	test_begin(title);
	fx->dir = xstrdup(mkdtemp(tmpl) ? tmpl : "/tmp/test-backup.none");
	fx->adir = xasprintf("%s/a", fx->dir);
	error_clear(&fx->err);
	setenv("CYRUS_TOOLKIT_NOSYNC", "1", 1);
}

static void fx_end(struct fixture *fx)
{
	free(fx->adir);
	rm_rf(fx->dir);
	free(fx->dir);
	test_end();
}

/* The archive adir opened in mode, or NULL and a failed assertion. */
#define open_ar(fx, mode) open_ar_((fx), (mode), __LINE__)
static struct backup_archive *open_ar_(struct fixture *fx,
				       enum backup_open_mode mode, int line)
{
	struct backup_archive *ar = NULL;
	if (backup_archive_open(fx->adir, mode, &ar, &fx->err) < 0) {
		printf("# %s\n", fx->err.msg);
		test_fail_(__FILE__, line, "backup_archive_open");
		return NULL;
	}
	return ar;
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

/* DIR/NAME: a manifest of three records; gzip if NAME ends in .gz. */
static char *make_manifest(const char *dir, const char *name)
{
	struct backup_manifest_writer w;
	struct error err = ERROR_INIT;
	char *path = xasprintf("%s/%s", dir, name);
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
	struct stat st;
	test_assert(stat(path, &st) == 0 && (uint64_t)st.st_size == bytes);
	return path;
}

/* The records of path through the streaming reader, twice (rewind):
 * how many, or -1 (err set). */
static long stream_count(const char *path, struct error *err)
{
	struct backup_manifest_reader rd;
	long n[2] = { 0, 0 };
	int r = 0;
	if (backup_manifest_open(path, &rd, err) < 0)
		return -1;
	for (int pass = 0; pass < 2 && r >= 0; pass++) {
		if (pass && backup_manifest_rewind(&rd, err) < 0)
			r = -1;
		while (r >= 0 && (r = backup_manifest_next(&rd, err)) > 0)
			n[pass]++;
	}
	backup_manifest_close(&rd);
	return r < 0 || n[0] != n[1] ? -1 : n[0];
}

static void test_manifest_roundtrip(void)
{
	struct fixture fx;
	fx_begin(&fx, "manifest: every byte survives write and load, "
		 "plain and gzip");
	const char *names[] = { "manifest", "manifest.gz" };
	for (int k = 0; k < 2; k++) {
		char *path = make_manifest(fx.dir, names[k]);
		struct backup_manifest m;
		test_assert_idx(backup_manifest_load(path, &m, &fx.err) == 0,
				k);
		test_assert_int(m.nrecs, 4); /* magic, mailbox, entry, bin */
		const struct backup_rec *r = backup_manifest_find(&m, "entry");
		test_assert_idx(r != NULL, k);
		if (r) {
			test_assert_mem(backup_rec_field(&m, r, 1),
					backup_rec_len(&m, r, 1), weird,
					sizeof(weird) - 1);
			test_assert_str(backup_rec_field(&m, r, 2), "");
			test_assert_str(backup_rec_field(&m, r, 9), "");
		}
		r = backup_manifest_find(&m, "bin");
		test_assert_idx(r && backup_rec_len(&m, r, 1) == 3 &&
				!memcmp(backup_rec_field(&m, r, 1), "x\0y", 3),
				k);
		r = backup_manifest_find(&m, "mailbox");
		test_assert_idx(r && !strcmp(backup_rec_field(&m, r, 1),
					     "user.bob.My Folder"), k);
		backup_manifest_release(&m);
		test_assert_int(stream_count(path, &fx.err), 3);
		free(path);
	}
	/* The text is what the format doc says a sysadmin reads. */
	size_t len;
	char *plain = xasprintf("%s/manifest", fx.dir);
	char *text = read_file(plain, &len);
	test_assert(strstr(text, "mailbox\tuser.bob.My Folder\n") != NULL);
	test_assert(strstr(text, "a\\tb\\nc\\rd\\\\e\\x1ff\\x7fg\\x01h%(i)") !=
		    NULL);
	free(text);
	free(plain);
	/* The same text in the gzip file, and its checksum by hand. */
	test_assert(sh("cd '%s' && gzip -t manifest.gz && "
		       "zcat manifest.gz | cmp - manifest && "
		       "test \"$(zcat manifest.gz | head -n -1 | sha1sum | "
		       "cut -c1-40)\" = \"$(zcat manifest.gz | tail -n 1 | "
		       "cut -f2)\"", fx.dir));
	fx_end(&fx);
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
	/* The streaming reader says the same. */
	struct error err2 = ERROR_INIT;
	test_assert(stream_count(path, &err2) < 0);
	test_assert_int(err2.kind, kind);
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
	struct fixture fx;
	fx_begin(&fx, "manifest: truncated, flipped, garbage, wrong version");
	char *path = make_manifest(fx.dir, "manifest");
	size_t len;
	char *text = read_file(path, &len);
	const char *bads[] = { "bad", "bad.gz" };

	for (int k = 0; k < 2; k++) {
		char *bad = xasprintf("%s/%s", fx.dir, bads[k]);
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
		test_assert_idx(backup_manifest_load(bad, &m, &fx.err) == 0, k);
		test_assert_idx(m.nrecs == 2 && backup_rec_len(&m, &m.recs[1],
							       1) == 200000, k);
		backup_manifest_release(&m);
		buf_release(&big);
		free(bad);
	}

	/* Plain: cut, flipped, not a manifest. */
	char *bad = xasprintf("%s/bad", fx.dir);
	unlink(bad);
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

	/* gzip: cut anywhere (in the header, the data, the trailer), a
	 * flipped byte, bytes after the end, not gzip at all: damaged. */
	free(bad);
	bad = xasprintf("%s/bad.gz", fx.dir);
	char *gz = make_manifest(fx.dir, "manifest.gz");
	size_t zlen;
	char *z = read_file(gz, &zlen);
	test_assert(zlen > 40 && (unsigned char)z[0] == 0x1f &&
		    (unsigned char)z[1] == 0x8b);
	unlink(bad);
	expect_load_error(bad, ERR_NOINPUT, NULL);
	size_t cuts[] = { 0, 1, 5, 10, zlen / 2, zlen - 8, zlen - 4,
			  zlen - 1 };
	for (size_t i = 0; i < ARRAY_SIZE(cuts); i++) {
		write_file(bad, z, cuts[i]);
		expect_load_error(bad, ERR_DATA, "damaged");
	}
	z[zlen / 2] ^= 0x55;
	write_file(bad, z, zlen);
	expect_load_error(bad, ERR_DATA, "damaged");
	z[zlen / 2] ^= 0x55;
	struct buf more = BUF_INIT;
	buf_add(&more, z, zlen);
	buf_adds(&more, "garbage");
	write_file(bad, more.s, more.len);
	expect_load_error(bad, ERR_DATA, "damaged");
	buf_release(&more);
	write_file(bad, text, len); /* plain text under a .gz name */
	expect_load_error(bad, ERR_DATA, "not a valid gzip file");
	/* Two gzip members (a recompressing tool may make them): read. */
	test_assert(sh("cd '%s' && { head -c 40 manifest | gzip -1; "
		       "tail -c +41 manifest | gzip -9; } >bad.gz", fx.dir));
	test_assert_int(stream_count(bad, &fx.err), 3);
	free(z);
	free(gz);
	free(bad);
	free(text);
	free(path);
	fx_end(&fx);
}

/* Many records, through the writer's and the reader's buffers: the
 * two kinds give the same records. */
static void test_manifest_large(void)
{
	struct fixture fx;
	fx_begin(&fx, "manifest: 30000 records, plain and gzip, the same");
	const char *names[] = { "m", "m.gz" };
	char *paths[2];
	for (int k = 0; k < 2; k++) {
		struct backup_manifest_writer w;
		paths[k] = xasprintf("%s/%s", fx.dir, names[k]);
		test_assert(backup_manifest_begin(&w, paths[k], true,
						  &fx.err) == 0);
		for (int i = 0; i < 30000; i++) {
			char uid[16], sha[BACKUP_SHA1_HEX];
			snprintf(uid, sizeof(uid), "%d", i + 1);
			backup_sha1_hex(uid, strlen(uid), sha);
			const char *f[] = { uid, sha, "1234" };
			backup_manifest_add(&w, "msg", 3, f);
		}
		test_assert(backup_manifest_commit(&w, NULL, &fx.err) == 0);
		test_assert_int(stream_count(paths[k], &fx.err), 30000);
	}
	struct stat a, b;
	test_assert(stat(paths[0], &a) == 0 && stat(paths[1], &b) == 0 &&
		    b.st_size < a.st_size * 3 / 5);
	test_assert(sh("cd '%s' && zcat m.gz | cmp - m", fx.dir));
	struct backup_manifest m[2];
	test_assert(backup_manifest_load(paths[0], &m[0], &fx.err) == 0);
	test_assert(backup_manifest_load(paths[1], &m[1], &fx.err) == 0);
	test_assert(m[0].nrecs == 30001 && m[1].nrecs == 30001 &&
		    m[0].len == m[1].len &&
		    !memcmp(m[0].data, m[1].data, m[0].len));
	backup_manifest_release(&m[0]);
	backup_manifest_release(&m[1]);
	free(paths[0]);
	free(paths[1]);
	fx_end(&fx);
}

/* A snapshot's manifest is manifest.gz; an older archive's plain one is
 * found where there is no .gz. */
static void test_manifest_path(void)
{
	struct fixture fx;
	fx_begin(&fx, "snapshots: manifest.gz, or an older plain manifest");
	struct backup_archive *ar = open_ar(&fx, BACKUP_OPEN_CREATE);
	if (!ar)
		goto out;
	test_assert(sh("mkdir -p '%s/snapshots/20260101T000000Z' "
		       "'%s/snapshots/20260102T000000Z' "
		       "'%s/snapshots/20260103T000000Z'",
		       fx.adir, fx.adir, fx.adir));
	char *d1 = xasprintf("%s/snapshots/20260101T000000Z", fx.adir);
	char *d2 = xasprintf("%s/snapshots/20260102T000000Z", fx.adir);
	free(make_manifest(d1, "manifest"));
	free(make_manifest(d2, "manifest.gz"));
	char *p = backup_manifest_path(ar, "20260101T000000Z");
	test_assert_str(strrchr(p, '/'), "/manifest");
	test_assert_int(stream_count(p, &fx.err), 3);
	free(p);
	p = backup_manifest_path(ar, "20260102T000000Z");
	test_assert_str(strrchr(p, '/'), "/manifest.gz");
	test_assert_int(stream_count(p, &fx.err), 3);
	free(p);
	p = backup_manifest_path(ar, "20260103T000000Z"); /* what to write */
	test_assert_str(strrchr(p, '/'), "/" BACKUP_MANIFEST_NAME);
	free(p);
	char **ids = NULL;
	size_t n = 0;
	test_assert(backup_snapshot_ids(ar, &ids, &n, &fx.err) == 0);
	test_assert(n == 2 && !strcmp(ids[0], "20260101T000000Z") &&
		    !strcmp(ids[1], "20260102T000000Z"));
	backup_ids_free(ids, n);
	free(d1);
	free(d2);
	backup_archive_close(&ar);
out:
	fx_end(&fx);
}

static void test_objects(void)
{
	struct fixture fx;
	fx_begin(&fx, "archive: objects by SHA-1, gzip, damage found");
	struct error *err = &fx.err;
	char sha[BACKUP_SHA1_HEX], sha2[BACKUP_SHA1_HEX];
	struct backup_archive *ar = open_ar(&fx, BACKUP_OPEN_CREATE);
	if (!ar)
		goto out;
	test_assert_int(ar->format, BACKUP_FORMAT_VERSION);
	test_assert(backup_object_put_mem(ar, BACKUP_MESSAGES, "abc", 3, sha,
					  err) == 0);
	test_assert_str(sha, "a9993e364706816aba3e25717850c26c9cd0d89d");
	test_assert(backup_object_put_mem(ar, BACKUP_MESSAGES, "abc", 3, sha2,
					  err) == 0);
	test_assert_int(ar->new_objects, 1);
	/* Pending in the pack being written: there already for create. */
	test_assert(backup_object_exists(ar, BACKUP_MESSAGES, sha));
	test_assert(backup_archive_sync(ar, err) == 0);
	test_assert(backup_object_exists(ar, BACKUP_MESSAGES, sha));
	test_assert(!backup_object_exists(ar, BACKUP_FILES, sha));
	test_assert_int(backup_pack_count(ar), 1);
	struct buf out = BUF_INIT;
	test_assert(backup_object_read(ar, BACKUP_MESSAGES, sha, 3, &out, -1,
				       err) == 0);
	test_assert_str(out.s, "abc");
	buf_reset(&out);
	test_assert(backup_object_read(ar, BACKUP_MESSAGES, sha, 4, &out, -1,
				       err) < 0);
	test_assert_int(err->kind, ERR_DATA);
	struct buf p = BUF_INIT;
	backup_object_path(ar, BACKUP_MESSAGES, sha, &p);
	test_assert(strstr(p.s, "/packs/") && strstr(p.s, ".tar.gz:a9993e"));
	buf_reset(&p);

	/* Loose objects (files): a gzip of other content under that name. */
	test_assert(backup_object_put_mem(ar, BACKUP_FILES, "abc", 3, sha,
					  err) == 0);
	test_assert(backup_archive_sync(ar, err) == 0);
	backup_object_path(ar, BACKUP_FILES, sha, &p);
	test_assert(strstr(p.s, "/files/a9/a9993e") != NULL);
	test_assert(backup_object_read(ar, BACKUP_FILES, sha, 3, NULL, -1,
				       err) == 0);
	/* Two gzip members, as gzip -d reads them: the same object. */
	test_assert(sh("{ printf ab | gzip; printf c | gzip; } > '%s'", p.s));
	test_assert(backup_object_read(ar, BACKUP_FILES, sha, 3, NULL, -1,
				       err) == 0);
	test_assert(sh("printf abd | gzip > '%s'", p.s));
	error_clear(err);
	test_assert(backup_object_read(ar, BACKUP_FILES, sha, UINT64_MAX,
				       NULL, -1, err) < 0);
	test_assert(err->kind == ERR_DATA && strstr(err->msg, "damaged"));
	write_file(p.s, "not gzip at all", 15);
	test_assert(backup_object_read(ar, BACKUP_FILES, sha, UINT64_MAX,
				       NULL, -1, err) < 0);
	test_assert(err->kind == ERR_DATA && strstr(err->msg, "damaged"));
	write_file(p.s, "\x1f\x8b\x08\x00", 4); /* truncated gzip */
	test_assert(backup_object_read(ar, BACKUP_FILES, sha, UINT64_MAX,
				       NULL, -1, err) < 0);
	test_assert(err->kind == ERR_DATA && strstr(err->msg, "truncated"));
	unlink(p.s);
	test_assert(backup_object_read(ar, BACKUP_FILES, sha, UINT64_MAX,
				       NULL, -1, err) < 0);
	test_assert_int(err->kind, ERR_NOINPUT);
	/* Snapshot ids sort by time, even after prune removed the first
	 * ones of a second. */
	char *id = backup_snapshot_newid(ar, 1795000000);
	test_assert_str(id, "20261118T110640Z");
	char *sd = xasprintf("%s/snapshots/%s-3", fx.adir, id);
	test_assert(mkdir(sd, 0700) == 0);
	free(id);
	id = backup_snapshot_newid(ar, 1795000000);
	test_assert_str(id, "20261118T110640Z-4");
	free(id);
	free(sd);
	/* A message nowhere. */
	test_assert(backup_object_read(ar, BACKUP_MESSAGES,
				       "0000000000000000000000000000000000000001",
				       UINT64_MAX, NULL, -1, err) < 0);
	test_assert(err->kind == ERR_NOINPUT && strstr(err->msg, "missing"));
	buf_release(&p);
	buf_release(&out);
	backup_archive_close(&ar);
	test_assert(ar == NULL);
out:
	fx_end(&fx);
}

/* Message i of the pack tests: sizes from 0 to about 9 KB, one of 5 MB
 * (staged in a file), text that compresses about by half. */
static char *pack_msg(int i, size_t *len)
{
	struct buf b = BUF_INIT;
	size_t n = i == 7 ? (5u << 20) : (size_t)(i * 997 % 9000) + 1;
	uint32_t x = (uint32_t)i * 2654435761u + 1;
	if (i == 3)
		n = 0;
	while (b.len < n) {
		x = x * 1103515245u + 12345u;
		buf_printf(&b, "%d %08x\n", i, x);
	}
	buf_setlen(&b, n);
	return buf_detach(&b, len);
}

#define NPACKMSG 120

/* Messages 0..n-1 put into adir (opened for create), synced; gzip
 * members and packs of the sizes given (NULL: the default). */
static struct backup_archive *pack_fill(struct fixture *fx,
					char shas[][BACKUP_SHA1_HEX], int n,
					const char *member, const char *pack)
{
	if (member)
		setenv("CYRUS_BACKUP_MEMBER_SIZE", member, 1);
	if (pack)
		setenv("CYRUS_BACKUP_PACK_SIZE", pack, 1);
	struct backup_archive *ar = open_ar(fx, BACKUP_OPEN_CREATE);
	for (int i = 0; ar && i < n; i++) {
		size_t len;
		char *m = pack_msg(i, &len);
		test_assert_idx(backup_object_put_mem(ar, BACKUP_MESSAGES, m,
						      len, shas[i],
						      &fx->err) == 0, i);
		free(m);
	}
	test_assert(ar && backup_archive_sync(ar, &fx->err) == 0);
	unsetenv("CYRUS_BACKUP_MEMBER_SIZE");
	unsetenv("CYRUS_BACKUP_PACK_SIZE");
	return ar;
}

/* Reads message i and compares; 0 or the error kind. */
static int pack_check_msg(struct backup_archive *ar, const char *sha, int i,
			  struct error *err)
{
	size_t len;
	char *m = pack_msg(i, &len);
	struct buf out = BUF_INIT;
	int r = backup_object_read(ar, BACKUP_MESSAGES, sha, len, &out, -1,
				   err);
	if (r == 0 && (out.len != len || memcmp(out.s, m, len)))
		r = -2;
	else if (r < 0)
		r = err->kind;
	free(m);
	buf_release(&out);
	return r;
}

/* Every message 0..n-1 reads back as it was (keep NULL), or exactly
 * those in keep do and the others are missing. */
static void check_msgs(struct backup_archive *ar,
		       char shas[][BACKUP_SHA1_HEX], int n,
		       const struct backup_shaset *keep, struct error *err)
{
	for (int i = 0; ar && i < n; i++)
		test_assert_idx(pack_check_msg(ar, shas[i], i, err) ==
				(!keep || backup_shaset_has(keep, shas[i])
					 ? 0 : ERR_NOINPUT), i);
}

static void test_packs(void)
{
	struct fixture fx;
	fx_begin(&fx, "packs: members, several packs, staged, tar and gzip "
		 "read them");
	char shas[NPACKMSG][BACKUP_SHA1_HEX];
	struct backup_archive *ar = pack_fill(&fx, shas, NPACKMSG, "20000",
					      "60000");
	if (!ar)
		goto out;
	size_t npacks = backup_pack_count(ar);
	test_assert(npacks >= 3);
	backup_archive_close(&ar);

	ar = open_ar(&fx, BACKUP_OPEN_READ);
	if (!ar)
		goto out;
	test_assert_int(backup_pack_count(ar), npacks);
	for (size_t i = 0; i < npacks; i++)
		test_assert_idx(backup_pack_check(ar, i, true, &fx.err) == 0,
				i);
	/* In order (the cursor goes on), backwards (it starts again),
	 * twice the same. */
	check_msgs(ar, shas, NPACKMSG, NULL, &fx.err);
	for (int i = NPACKMSG - 1; i >= 0; i--)
		test_assert_idx(pack_check_msg(ar, shas[i], i, &fx.err) == 0,
				i);
	test_assert(pack_check_msg(ar, shas[5], 5, &fx.err) == 0);
	test_assert(pack_check_msg(ar, shas[5], 5, &fx.err) == 0);
	/* To a file, as restore does. */
	char *dst = xasprintf("%s/m7", fx.dir);
	test_assert(backup_object_extract(ar, BACKUP_MESSAGES, shas[7],
					  UINT64_MAX, dst, &fx.err) == 0);
	struct stat st;
	test_assert(stat(dst, &st) == 0 && st.st_size == (5 << 20));
	free(dst);

	/* The sysadmin's way: gzip, tar and sha1sum alone. */
	struct buf pp = BUF_INIT;
	backup_object_path(ar, BACKUP_MESSAGES, shas[10], &pp);
	char *colon = strrchr(pp.s, ':');
	test_assert(colon != NULL);
	if (colon)
		*colon = '\0';
	test_assert(sh("cd '%s' && gzip -t '%s' && zcat '%s' | tar -t | "
		       "grep -qx %s && tar -xzf '%s' %s && "
		       "echo '%s  %s' | sha1sum -c --quiet - && "
		       "test $(zcat %s/packs/*.idx.gz | "
		       "grep -c '^[0-9a-f]\\{40\\}\t') = %d",
		       fx.dir, pp.s, pp.s, shas[10], pp.s, shas[10], shas[10],
		       shas[10], fx.adir, NPACKMSG));
	/* Each index checks by hand: all but the end line, sha1sum. */
	test_assert(sh("cd '%s/packs' && for i in *.idx.gz; do "
		       "test \"$(zcat $i | head -n -1 | sha1sum | cut -c1-40)\" "
		       "= \"$(zcat $i | tail -n 1 | cut -f2)\" || exit 1; "
		       "p=${i%%.idx.gz}.tar.gz; "
		       "test \"$(sha1sum <$p | cut -c1-40)\" = ${i%%.idx.gz} "
		       "|| exit 1; done", fx.adir));
	buf_release(&pp);
	backup_archive_close(&ar);
out:
	fx_end(&fx);
}

/* The first pack file of adir (name in out). */
static bool first_pack(const char *adir, const char *ext, struct buf *out)
{
	bool ok = sh("ls '%s/packs/' | grep '%s$' | head -n 1 >'%s/first'",
		     adir, ext, adir);
	char *p = xasprintf("%s/first", adir);
	size_t len;
	char *name = read_file(p, &len);
	unlink(p);
	free(p);
	buf_reset(out);
	buf_printf(out, "%s/packs/%s", adir, name);
	buf_rtrim(out);
	free(name);
	return ok && len > 1;
}

static void flip_byte(const char *path, off_t off)
{
	int fd = open(path, O_RDWR);
	unsigned char c = 0;
	if (fd < 0 || pread(fd, &c, 1, off) != 1)
		printf("# cannot read %s\n", path);
	c ^= 0xff;
	if (fd < 0 || pwrite(fd, &c, 1, off) != 1)
		printf("# cannot write %s\n", path);
	if (fd >= 0)
		close(fd);
}

static void test_pack_damage(void)
{
	struct fixture fx;
	fx_begin(&fx, "packs: a flipped byte, a damaged index, a missing pack");
	struct error *err = &fx.err;
	char shas[NPACKMSG][BACKUP_SHA1_HEX];
	struct buf pk = BUF_INIT, ix = BUF_INIT;
	char *save = xasprintf("%s/save", fx.dir);
	struct backup_archive *ar = pack_fill(&fx, shas, 20, NULL, NULL);
	backup_archive_close(&ar);
	test_assert(first_pack(fx.adir, "tar.gz", &pk));
	test_assert(first_pack(fx.adir, "idx.gz", &ix));
	test_assert(sh("cp '%s' '%s'", pk.s, save));

	/* Deep in the one member: the messages after it are damaged, the
	 * pack's SHA-1 is wrong, and each error names its message. */
	struct stat st;
	test_assert(stat(pk.s, &st) == 0);
	flip_byte(pk.s, st.st_size / 2);
	ar = open_ar(&fx, BACKUP_OPEN_READ);
	if (!ar)
		goto out;
	test_assert(backup_pack_check(ar, 0, false, err) == 0);
	test_assert(backup_pack_check(ar, 0, true, err) < 0);
	test_assert(err->kind == ERR_DATA && strstr(err->msg, "damaged"));
	int nbad = 0;
	for (int i = 0; i < 20; i++) {
		int r = pack_check_msg(ar, shas[i], i, err);
		if (r) {
			nbad++;
			test_assert_idx(r == ERR_DATA, i);
			test_assert_idx(strstr(err->msg, shas[i]) &&
					strstr(err->msg, "damaged"), i);
		}
	}
	test_assert(nbad > 0 && nbad < 20);
	test_assert(pack_check_msg(ar, shas[0], 0, err) == 0);
	backup_archive_close(&ar);

	/* A damaged index: its messages are missing, and why is said. */
	test_assert(sh("cp '%s' '%s'", save, pk.s));
	test_assert(sh("zcat '%s' | sed 's/\t512\t/\t513\t/' | gzip >'%s.x' "
		       "&& mv '%s.x' '%s'", ix.s, ix.s, ix.s, ix.s));
	ar = open_ar(&fx, BACKUP_OPEN_READ);
	if (!ar)
		goto out;
	test_assert(backup_pack_check(ar, 0, false, err) < 0);
	test_assert(strstr(err->msg, "idx.gz") && strstr(err->msg, "checksum"));
	test_assert(pack_check_msg(ar, shas[1], 1, err) == ERR_NOINPUT);
	test_assert(strstr(err->msg, shas[1]) && strstr(err->msg, "checksum"));
	backup_archive_close(&ar);
	/* A truncated index: damaged too, no crash. */
	test_assert(sh("cp '%s' '%s' && head -c 30 '%s' >'%s.x' && "
		       "mv '%s.x' '%s'", save, pk.s, ix.s, ix.s, ix.s, ix.s));
	ar = open_ar(&fx, BACKUP_OPEN_READ);
	if (!ar)
		goto out;
	test_assert(backup_pack_check(ar, 0, false, err) < 0);
	test_assert(strstr(err->msg, "idx.gz") &&
		    strstr(err->msg, "damaged: truncated gzip data"));
	backup_archive_close(&ar);

	/* A missing pack: named. */
	test_assert(sh("cd '%s' && rm packs/*.idx.gz && rm -r snapshots",
		       fx.adir));
	ar = pack_fill(&fx, shas, 20, NULL, NULL); /* the same messages again */
	backup_archive_close(&ar);
	test_assert(first_pack(fx.adir, "tar.gz", &pk));
	test_assert(first_pack(fx.adir, "idx.gz", &ix));
	test_assert(sh("cp '%s' '%s'", pk.s, save));
	unlink(pk.s);
	ar = open_ar(&fx, BACKUP_OPEN_READ);
	if (!ar)
		goto out;
	test_assert(backup_pack_check(ar, 0, false, err) < 0);
	test_assert(err->kind == ERR_NOINPUT && strstr(err->msg, "missing"));
	test_assert(pack_check_msg(ar, shas[2], 2, err) == ERR_NOINPUT);
	test_assert(strstr(err->msg, shas[2]) && strstr(err->msg, pk.s));
	backup_archive_close(&ar);

	/* A pack without its index (a run that died between the renames):
	 * create removes it. */
	test_assert(sh("cp '%s' '%s' && rm '%s'", save, pk.s, ix.s));
	ar = open_ar(&fx, BACKUP_OPEN_READ);
	test_assert(ar && backup_pack_count(ar) == 0);
	test_assert(pack_check_msg(ar, shas[2], 2, err) == ERR_NOINPUT);
	test_assert(strstr(err->msg, "without an index") != NULL);
	backup_archive_close(&ar);
	test_assert(access(pk.s, F_OK) == 0);
	ar = open_ar(&fx, BACKUP_OPEN_CREATE);
	backup_archive_close(&ar);
	test_assert(access(pk.s, F_OK) < 0);

	/* A pack lost: create stores its messages again, then prune drops
	 * the index that names the lost pack. */
	ar = pack_fill(&fx, shas, 20, NULL, NULL);
	backup_archive_close(&ar);
	test_assert(first_pack(fx.adir, "tar.gz", &pk));
	test_assert(first_pack(fx.adir, "idx.gz", &ix));
	unlink(pk.s);
	/* One more message: not the same pack again, whatever the time. */
	ar = pack_fill(&fx, shas, 21, NULL, NULL);
	test_assert(ar && ar->new_objects == 21);
	backup_archive_close(&ar);
	struct backup_shaset keep = { 0 };
	struct backup_prune_stats ps;
	for (int i = 0; i < 20; i++)
		backup_shaset_add(&keep, shas[i]);
	ar = open_ar(&fx, BACKUP_OPEN_PRUNE);
	test_assert(ar && backup_packs_prune(ar, &keep, 0, false, &ps, err) ==
			  0);
	test_assert(ps.removed == 1 && ps.skipped == 0 && ps.rewritten == 1);
	backup_archive_close(&ar);
	backup_shaset_release(&keep);
	/* The lost pack's index is gone -- unless the rewrite made the very
	 * same pack again (same messages, same second): then both are back. */
	test_assert(access(ix.s, F_OK) < 0 || access(pk.s, F_OK) == 0);
	ar = open_ar(&fx, BACKUP_OPEN_READ);
	check_msgs(ar, shas, 20, NULL, err);
	backup_archive_close(&ar);
out:
	free(save);
	buf_release(&pk);
	buf_release(&ix);
	fx_end(&fx);
}

static void test_format1(void)
{
	struct fixture fx;
	fx_begin(&fx, "formats: a format 1 archive is read, and becomes "
		 "format 3 when create opens it");
	struct error *err = &fx.err;
	char sha[BACKUP_SHA1_HEX];
	const char *abc = "a9993e364706816aba3e25717850c26c9cd0d89d";
	char *fp = xasprintf("%s/FORMAT", fx.adir);
	char *f = NULL;
	size_t len;
	/* As version 1 wrote it: a loose gzip file per message. */
	test_assert(sh("a='%s' && mkdir -p $a/messages/a9 $a/files "
		       "$a/snapshots $a/tmp && "
		       "echo 'cyrus-backup 1' >$a/FORMAT && : >$a/lock && "
		       "printf abc | gzip >$a/messages/a9/%s.gz",
		       fx.adir, abc));
	struct backup_archive *ar = open_ar(&fx, BACKUP_OPEN_READ);
	if (!ar)
		goto out;
	test_assert_int(ar->format, 1);
	struct buf out = BUF_INIT;
	test_assert(backup_object_read(ar, BACKUP_MESSAGES, abc, 3, &out, -1,
				       err) == 0);
	test_assert_str(out.s, "abc");
	backup_archive_close(&ar);
	f = read_file(fp, &len);
	test_assert_str(f, "cyrus-backup 1\n"); /* readers change nothing */
	free(f);
	ar = open_ar(&fx, BACKUP_OPEN_CREATE);
	if (!ar)
		goto out;
	/* Before anything a format 1 or 2 tool would not see is written. */
	test_assert_int(ar->format, BACKUP_FORMAT_VERSION);
	f = read_file(fp, &len);
	test_assert_str(f, "cyrus-backup 3\n");
	free(f);
	test_assert(backup_object_exists(ar, BACKUP_MESSAGES, abc));
	test_assert(backup_object_put_mem(ar, BACKUP_MESSAGES, "abc", 3, sha,
					  err) == 0);
	test_assert_int(ar->new_objects, 0);
	test_assert(backup_object_put_mem(ar, BACKUP_MESSAGES, "abcd", 4, sha,
					  err) == 0);
	test_assert(backup_archive_sync(ar, err) == 0);
	test_assert_int(backup_pack_count(ar), 1);
	backup_archive_close(&ar);
	ar = open_ar(&fx, BACKUP_OPEN_READ);
	if (!ar)
		goto out;
	buf_reset(&out);
	test_assert(backup_object_read(ar, BACKUP_MESSAGES, abc, 3, &out, -1,
				       err) == 0);
	test_assert(backup_object_read(ar, BACKUP_MESSAGES, sha, 4, &out, -1,
				       err) == 0);
	test_assert_str(out.s, "abcabcd");
	buf_release(&out);
	backup_archive_close(&ar);
out:
	free(fp);
	fx_end(&fx);
}

static void test_pack_prune(void)
{
	struct fixture fx;
	fx_begin(&fx, "packs: prune removes, rewrites, keeps; duplicates "
		 "resolved");
	struct error *err = &fx.err;
	char shas[NPACKMSG][BACKUP_SHA1_HEX];
	struct backup_shaset keep = { 0 };
	struct backup_prune_stats st;
	struct backup_archive *ar = pack_fill(&fx, shas, 60, "6000", "30000");
	if (!ar)
		goto out;
	size_t np = backup_pack_count(ar);
	test_assert(np >= 3);
	backup_archive_close(&ar);
	/* Keep 0..39 but 12 and 13 (one member, or part of one): the last
	 * pack has nothing kept. */
	for (int i = 0; i < 40; i++)
		if (i != 12 && i != 13)
			backup_shaset_add(&keep, shas[i]);
	ar = open_ar(&fx, BACKUP_OPEN_PRUNE);
	if (!ar)
		goto out;
	test_assert(backup_packs_prune(ar, &keep, 0, true, &st, err) == 0);
	test_assert(st.removed >= 1 && st.rewritten >= 1);
	test_assert_int(st.objects, 22);
	test_assert(backup_packs_prune(ar, &keep, 0, false, &st, err) == 0);
	test_assert_int(st.objects, 22);
	test_assert(st.bytes > 0);
	backup_archive_close(&ar);
	ar = open_ar(&fx, BACKUP_OPEN_READ);
	if (!ar)
		goto out;
	for (size_t i = 0; i < backup_pack_count(ar); i++)
		test_assert_idx(backup_pack_check(ar, i, true, err) == 0, i);
	check_msgs(ar, shas, 60, &keep, err);
	backup_archive_close(&ar);

	/* A rewrite cut short after the new pack is in: both packs hold
	 * the kept messages; the next prune keeps one of them. */
	test_assert(sh("cd '%s/packs' && mkdir ../keep && cp * ../keep",
		       fx.adir));
	backup_shaset_release(&keep);
	for (int i = 0; i < 30; i++)
		if (i != 12 && i != 13)
			backup_shaset_add(&keep, shas[i]);
	error_clear(err);
	ar = open_ar(&fx, BACKUP_OPEN_PRUNE);
	test_assert(ar && backup_packs_prune(ar, &keep, 0, false, &st, err) ==
			  0);
	if (err->kind)
		printf("# %s\n", err->msg);
	backup_archive_close(&ar);
	test_assert(sh("cd '%s/packs' && cp -n ../keep/* .", fx.adir));
	ar = open_ar(&fx, BACKUP_OPEN_PRUNE);
	if (!ar)
		goto out;
	size_t before = backup_pack_count(ar);
	/* --max-unused 100: nothing rewritten, only what is all dead goes */
	test_assert(backup_packs_prune(ar, &keep, 100, false, &st, err) == 0);
	test_assert_int(st.rewritten, 0);
	test_assert(st.removed >= 1);
	test_assert(backup_packs_prune(ar, &keep, 0, false, &st, err) == 0);
	backup_archive_close(&ar);
	ar = open_ar(&fx, BACKUP_OPEN_READ);
	if (!ar)
		goto out;
	test_assert(backup_pack_count(ar) < before);
	check_msgs(ar, shas, 60, &keep, err);
	/* Each kept message in one pack only. */
	test_assert(sh("test $(zcat '%s'/packs/*.idx.gz | "
		       "grep -c '^[0-9a-f]\\{40\\}\t') = 28", fx.adir));
	backup_archive_close(&ar);
	/* Nothing kept: no pack left. */
	backup_shaset_release(&keep);
	ar = open_ar(&fx, BACKUP_OPEN_PRUNE);
	test_assert(ar && backup_packs_prune(ar, &keep, 0, false, &st, err) ==
			  0);
	backup_archive_close(&ar);
	test_assert(sh("test -z \"$(ls '%s/packs')\"", fx.adir));
out:
	backup_shaset_release(&keep);
	fx_end(&fx);
}

static void test_parts(void)
{
	struct fixture fx;
	fx_begin(&fx, "archive: files in parts, from memory and from a file");
	char *f = xasprintf("%s/data", fx.dir);
	static const size_t sizes[] = { 0, 1, 99, 100, 101, 250, 300, 1000 };
	char *data = xmalloc(1000);
	for (int i = 0; i < 1000; i++)
		data[i] = (char)(i * 31 % 253);
	setenv("CYRUS_BACKUP_PART_SIZE", "100", 1);
	struct backup_archive *ar = open_ar(&fx, BACKUP_OPEN_CREATE);
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
				&parts, &np, &fx.err) == 0, k);
			if (fd >= 0)
				close(fd);
			test_assert_idx(!strcmp(sha, want), k);
			test_assert_idx(size == len, k);
			test_assert_idx(np == (len <= 100 ? 0
							  : (len + 99) / 100),
					k);
			backup_archive_sync(ar, &fx.err);
			struct buf all = BUF_INIT;
			uint64_t off = 0;
			for (size_t i = 0; i < np; i++) {
				test_assert_idx(parts[i].offset == off, k);
				off += parts[i].size;
				test_assert_idx(backup_object_read(
					ar, BACKUP_FILES, parts[i].sha1,
					parts[i].size, &all, -1, &fx.err) == 0,
					k);
			}
			if (!np)
				test_assert_idx(backup_object_read(
					ar, BACKUP_FILES, sha, len, &all, -1,
					&fx.err) == 0, k);
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
	fx_end(&fx);
}

static void test_not_archives(void)
{
	struct fixture fx;
	fx_begin(&fx, "archive: a full non-archive and a newer format refused");
	struct backup_archive *ar = NULL;
	char *f = xasprintf("%s/file", fx.dir);
	write_file(f, "x", 1);
	test_assert(backup_archive_open(fx.dir, BACKUP_OPEN_CREATE, &ar,
					&fx.err) < 0);
	test_assert_int(fx.err.kind, ERR_DATA);
	test_assert(backup_archive_open(fx.dir, BACKUP_OPEN_LIST, &ar,
					&fx.err) < 0);
	test_assert_int(fx.err.kind, ERR_NOINPUT);
	free(f);
	f = xasprintf("%s/FORMAT", fx.dir);
	write_file(f, "cyrus-backup 99\n", 16);
	test_assert(backup_archive_open(fx.dir, BACKUP_OPEN_LIST, &ar,
					&fx.err) < 0);
	test_assert(fx.err.kind == ERR_DATA && strstr(fx.err.msg, "99"));
	free(f);
	fx_end(&fx);
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
		test_manifest_roundtrip, test_manifest_damage,
		test_manifest_large, test_manifest_path, test_objects,
		test_parts, test_packs, test_pack_damage, test_format1,
		test_pack_prune, test_not_archives, test_shaset, NULL,
	};
	return test_run(tests);
}
