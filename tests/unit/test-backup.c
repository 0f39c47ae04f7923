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
	test_assert_int(ar->format, BACKUP_FORMAT_VERSION);
	test_assert(backup_object_put_mem(ar, BACKUP_MESSAGES, "abc", 3, sha,
					  &err) == 0);
	test_assert_str(sha, "a9993e364706816aba3e25717850c26c9cd0d89d");
	test_assert(backup_object_put_mem(ar, BACKUP_MESSAGES, "abc", 3, sha2,
					  &err) == 0);
	test_assert_int(ar->new_objects, 1);
	/* Pending in the pack being written: there already for create. */
	test_assert(backup_object_exists(ar, BACKUP_MESSAGES, sha));
	test_assert(backup_archive_sync(ar, &err) == 0);
	test_assert(backup_object_exists(ar, BACKUP_MESSAGES, sha));
	test_assert(!backup_object_exists(ar, BACKUP_FILES, sha));
	test_assert_int(backup_pack_count(ar), 1);
	struct buf out = BUF_INIT;
	test_assert(backup_object_read(ar, BACKUP_MESSAGES, sha, 3, &out, -1,
				       &err) == 0);
	test_assert_str(out.s, "abc");
	buf_reset(&out);
	test_assert(backup_object_read(ar, BACKUP_MESSAGES, sha, 4, &out, -1,
				       &err) < 0);
	test_assert_int(err.kind, ERR_DATA);
	struct buf p = BUF_INIT;
	backup_object_path(ar, BACKUP_MESSAGES, sha, &p);
	test_assert(strstr(p.s, "/packs/") && strstr(p.s, ".tar.gz:a9993e"));
	buf_reset(&p);

	/* Loose objects (files): a gzip of other content under that name. */
	test_assert(backup_object_put_mem(ar, BACKUP_FILES, "abc", 3, sha,
					  &err) == 0);
	test_assert(backup_archive_sync(ar, &err) == 0);
	backup_object_path(ar, BACKUP_FILES, sha, &p);
	test_assert(strstr(p.s, "/files/a9/a9993e") != NULL);
	char *cmd = xasprintf("printf abd | gzip > '%s'", p.s);
	test_assert(system(cmd) == 0);
	free(cmd);
	error_clear(&err);
	test_assert(backup_object_read(ar, BACKUP_FILES, sha, UINT64_MAX,
				       NULL, -1, &err) < 0);
	test_assert(err.kind == ERR_DATA && strstr(err.msg, "damaged"));
	write_file(p.s, "not gzip at all", 15);
	test_assert(backup_object_read(ar, BACKUP_FILES, sha, UINT64_MAX,
				       NULL, -1, &err) < 0);
	test_assert(err.kind == ERR_DATA);
	write_file(p.s, "\x1f\x8b\x08\x00", 4); /* truncated gzip */
	test_assert(backup_object_read(ar, BACKUP_FILES, sha, UINT64_MAX,
				       NULL, -1, &err) < 0);
	test_assert(err.kind == ERR_DATA);
	unlink(p.s);
	test_assert(backup_object_read(ar, BACKUP_FILES, sha, UINT64_MAX,
				       NULL, -1, &err) < 0);
	test_assert_int(err.kind, ERR_NOINPUT);
	/* Snapshot ids sort by time, even after prune removed the first
	 * ones of a second. */
	char *id = backup_snapshot_newid(ar, 1795000000);
	test_assert_str(id, "20261118T110640Z");
	char *sd = xasprintf("%s/snapshots/%s-3", adir, id);
	test_assert(mkdir(sd, 0700) == 0);
	free(id);
	id = backup_snapshot_newid(ar, 1795000000);
	test_assert_str(id, "20261118T110640Z-4");
	free(id);
	free(sd);
	/* A message nowhere. */
	test_assert(backup_object_read(ar, BACKUP_MESSAGES,
				       "0000000000000000000000000000000000000001",
				       UINT64_MAX, NULL, -1, &err) < 0);
	test_assert(err.kind == ERR_NOINPUT && strstr(err.msg, "missing"));
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

static struct backup_archive *pack_fill(const char *adir,
					char shas[][BACKUP_SHA1_HEX], int n)
{
	struct backup_archive *ar = NULL;
	struct error err = ERROR_INIT;
	test_assert(backup_archive_open(adir, BACKUP_OPEN_CREATE, &ar, &err) ==
		    0);
	for (int i = 0; ar && i < n; i++) {
		size_t len;
		char *m = pack_msg(i, &len);
		test_assert_idx(backup_object_put_mem(ar, BACKUP_MESSAGES, m,
						      len, shas[i], &err) == 0,
				i);
		free(m);
	}
	test_assert(ar && backup_archive_sync(ar, &err) == 0);
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

static void test_packs(void)
{
	test_begin("packs: members, several packs, staged, tar and gzip read them");
	char *dir = scratch();
	char *adir = xasprintf("%s/a", dir);
	char shas[NPACKMSG][BACKUP_SHA1_HEX];
	struct error err = ERROR_INIT;
	setenv("CYRUS_TOOLKIT_NOSYNC", "1", 1);
	setenv("CYRUS_BACKUP_MEMBER_SIZE", "20000", 1);
	setenv("CYRUS_BACKUP_PACK_SIZE", "60000", 1);
	struct backup_archive *ar = pack_fill(adir, shas, NPACKMSG);
	unsetenv("CYRUS_BACKUP_MEMBER_SIZE");
	unsetenv("CYRUS_BACKUP_PACK_SIZE");
	if (!ar)
		goto out;
	size_t npacks = backup_pack_count(ar);
	test_assert(npacks >= 3);
	backup_archive_close(&ar);

	test_assert(backup_archive_open(adir, BACKUP_OPEN_READ, &ar, &err) ==
		    0);
	if (!ar)
		goto out;
	test_assert_int(backup_pack_count(ar), npacks);
	for (size_t i = 0; i < npacks; i++)
		test_assert_idx(backup_pack_check(ar, i, true, &err) == 0, i);
	/* In order (the cursor goes on), backwards (it starts again),
	 * twice the same. */
	for (int i = 0; i < NPACKMSG; i++)
		test_assert_idx(pack_check_msg(ar, shas[i], i, &err) == 0, i);
	for (int i = NPACKMSG - 1; i >= 0; i--)
		test_assert_idx(pack_check_msg(ar, shas[i], i, &err) == 0, i);
	test_assert(pack_check_msg(ar, shas[5], 5, &err) == 0);
	test_assert(pack_check_msg(ar, shas[5], 5, &err) == 0);
	/* To a file, as restore does. */
	char *dst = xasprintf("%s/m7", dir);
	test_assert(backup_object_extract(ar, BACKUP_MESSAGES, shas[7],
					  UINT64_MAX, dst, &err) == 0);
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
	char *cmd = xasprintf(
		"cd '%s' && gzip -t '%s' && zcat '%s' | tar -t | grep -qx %s "
		"&& tar -xzf '%s' %s && echo '%s  %s' | sha1sum -c --quiet - "
		"&& zcat %s/packs/*.idx.gz | grep -c '^[0-9a-f]\\{40\\}\t' "
		">count",
		dir, pp.s, pp.s, shas[10], pp.s, shas[10], shas[10], shas[10],
		adir);
	test_assert(system(cmd) == 0);
	free(cmd);
	char *cpath = xasprintf("%s/count", dir);
	size_t clen;
	char *count = read_file(cpath, &clen);
	test_assert_int(atoi(count), NPACKMSG);
	free(count);
	free(cpath);
	/* Each index checks by hand: all but the end line, sha1sum. */
	cmd = xasprintf("cd '%s/packs' && for i in *.idx.gz; do "
			"test \"$(zcat $i | head -n -1 | sha1sum | cut -c1-40)\" "
			"= \"$(zcat $i | tail -n 1 | cut -f2)\" || exit 1; "
			"p=${i%%.idx.gz}.tar.gz; "
			"test \"$(sha1sum <$p | cut -c1-40)\" = ${i%%.idx.gz} "
			"|| exit 1; done", adir);
	test_assert(system(cmd) == 0);
	free(cmd);
	buf_release(&pp);
	backup_archive_close(&ar);
out:
	free(adir);
	rm_rf(dir);
	free(dir);
	test_end();
}

/* The first pack file of adir (name in out). */
static bool first_pack(const char *adir, const char *ext, struct buf *out)
{
	char *cmd = xasprintf("ls '%s/packs/' | grep '%s$' | head -n 1 "
			      ">'%s/first'", adir, ext, adir);
	bool ok = system(cmd) == 0;
	free(cmd);
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
	test_begin("packs: a flipped byte, a damaged index, a missing pack");
	char *dir = scratch();
	char *adir = xasprintf("%s/a", dir);
	char shas[NPACKMSG][BACKUP_SHA1_HEX];
	struct error err = ERROR_INIT;
	struct buf pk = BUF_INIT, ix = BUF_INIT;
	setenv("CYRUS_TOOLKIT_NOSYNC", "1", 1);
	struct backup_archive *ar = pack_fill(adir, shas, 20);
	backup_archive_close(&ar);
	test_assert(first_pack(adir, "tar.gz", &pk));
	test_assert(first_pack(adir, "idx.gz", &ix));
	char *save = xasprintf("%s/save", dir);
	char *cmd = xasprintf("cp '%s' '%s'", pk.s, save);
	test_assert(system(cmd) == 0);
	free(cmd);

	/* Deep in the one member: the messages after it are damaged, the
	 * pack's SHA-1 is wrong, and each error names its message. */
	struct stat st;
	test_assert(stat(pk.s, &st) == 0);
	flip_byte(pk.s, st.st_size / 2);
	test_assert(backup_archive_open(adir, BACKUP_OPEN_READ, &ar, &err) ==
		    0);
	if (!ar)
		goto out;
	test_assert(backup_pack_check(ar, 0, false, &err) == 0);
	test_assert(backup_pack_check(ar, 0, true, &err) < 0);
	test_assert(err.kind == ERR_DATA && strstr(err.msg, "damaged"));
	int nbad = 0;
	for (int i = 0; i < 20; i++) {
		int r = pack_check_msg(ar, shas[i], i, &err);
		if (r) {
			nbad++;
			test_assert_idx(r == ERR_DATA, i);
			test_assert_idx(strstr(err.msg, shas[i]) &&
					strstr(err.msg, "damaged"), i);
		}
	}
	test_assert(nbad > 0 && nbad < 20);
	test_assert(pack_check_msg(ar, shas[0], 0, &err) == 0);
	backup_archive_close(&ar);

	/* A damaged index: its messages are missing, and why is said. */
	cmd = xasprintf("cp '%s' '%s'", save, pk.s);
	test_assert(system(cmd) == 0);
	free(cmd);
	cmd = xasprintf("zcat '%s' | sed 's/\t512\t/\t513\t/' | gzip >'%s.x' "
			"&& mv '%s.x' '%s'", ix.s, ix.s, ix.s, ix.s);
	test_assert(system(cmd) == 0);
	free(cmd);
	test_assert(backup_archive_open(adir, BACKUP_OPEN_READ, &ar, &err) ==
		    0);
	if (!ar)
		goto out;
	test_assert(backup_pack_check(ar, 0, false, &err) < 0);
	test_assert(strstr(err.msg, "idx.gz") && strstr(err.msg, "checksum"));
	test_assert(pack_check_msg(ar, shas[1], 1, &err) == ERR_NOINPUT);
	test_assert(strstr(err.msg, shas[1]) && strstr(err.msg, "checksum"));
	backup_archive_close(&ar);

	/* A missing pack: named. */
	cmd = xasprintf("cd '%s' && rm packs/*.idx.gz && rm -r snapshots",
			adir);
	test_assert(system(cmd) == 0);
	free(cmd);
	ar = pack_fill(adir, shas, 20); /* the same messages again */
	backup_archive_close(&ar);
	test_assert(first_pack(adir, "tar.gz", &pk));
	test_assert(first_pack(adir, "idx.gz", &ix));
	cmd = xasprintf("cp '%s' '%s'", pk.s, save);
	test_assert(system(cmd) == 0);
	free(cmd);
	unlink(pk.s);
	test_assert(backup_archive_open(adir, BACKUP_OPEN_READ, &ar, &err) ==
		    0);
	if (!ar)
		goto out;
	test_assert(backup_pack_check(ar, 0, false, &err) < 0);
	test_assert(err.kind == ERR_NOINPUT && strstr(err.msg, "missing"));
	test_assert(pack_check_msg(ar, shas[2], 2, &err) == ERR_NOINPUT);
	test_assert(strstr(err.msg, shas[2]) && strstr(err.msg, pk.s));
	backup_archive_close(&ar);

	/* A pack without its index (a run that died between the renames):
	 * create removes it. */
	cmd = xasprintf("cp '%s' '%s' && rm '%s'", save, pk.s, ix.s);
	test_assert(system(cmd) == 0);
	free(cmd);
	test_assert(backup_archive_open(adir, BACKUP_OPEN_READ, &ar, &err) ==
		    0);
	test_assert(ar && backup_pack_count(ar) == 0);
	test_assert(pack_check_msg(ar, shas[2], 2, &err) == ERR_NOINPUT);
	test_assert(strstr(err.msg, "without an index") != NULL);
	backup_archive_close(&ar);
	test_assert(access(pk.s, F_OK) == 0);
	test_assert(backup_archive_open(adir, BACKUP_OPEN_CREATE, &ar, &err) ==
		    0);
	backup_archive_close(&ar);
	test_assert(access(pk.s, F_OK) < 0);

	/* A pack lost: create stores its messages again, then prune drops
	 * the index that names the lost pack. */
	ar = pack_fill(adir, shas, 20);
	backup_archive_close(&ar);
	test_assert(first_pack(adir, "tar.gz", &pk));
	test_assert(first_pack(adir, "idx.gz", &ix));
	unlink(pk.s);
	/* One more message: not the same pack again, whatever the time. */
	ar = pack_fill(adir, shas, 21);
	test_assert(ar && ar->new_objects == 21);
	backup_archive_close(&ar);
	struct backup_shaset keep = { 0 };
	struct backup_prune_stats ps;
	for (int i = 0; i < 20; i++)
		backup_shaset_add(&keep, shas[i]);
	test_assert(backup_archive_open(adir, BACKUP_OPEN_PRUNE, &ar, &err) ==
		    0);
	test_assert(ar && backup_packs_prune(ar, &keep, 0, false, &ps, &err) ==
			  0);
	test_assert(ps.removed == 1 && ps.skipped == 0 && ps.rewritten == 1);
	backup_archive_close(&ar);
	backup_shaset_release(&keep);
	/* The lost pack's index is gone -- unless the rewrite made the very
	 * same pack again (same messages, same second): then both are back. */
	test_assert(access(ix.s, F_OK) < 0 || access(pk.s, F_OK) == 0);
	test_assert(backup_archive_open(adir, BACKUP_OPEN_READ, &ar, &err) ==
		    0);
	for (int i = 0; ar && i < 20; i++)
		test_assert_idx(pack_check_msg(ar, shas[i], i, &err) == 0, i);
	backup_archive_close(&ar);
out:
	free(save);
	buf_release(&pk);
	buf_release(&ix);
	free(adir);
	rm_rf(dir);
	free(dir);
	test_end();
}

static void test_format1(void)
{
	test_begin("packs: a format 1 archive is read, and becomes format 2");
	char *dir = scratch();
	char *adir = xasprintf("%s/a", dir);
	struct backup_archive *ar = NULL;
	struct error err = ERROR_INIT;
	char sha[BACKUP_SHA1_HEX];
	setenv("CYRUS_TOOLKIT_NOSYNC", "1", 1);
	/* As version 1 wrote it: a loose gzip file per message. */
	char *cmd = xasprintf(
		"mkdir -p '%s/messages/a9' '%s/files' '%s/snapshots' '%s/tmp' "
		"&& echo 'cyrus-backup 1' >'%s/FORMAT' && : >'%s/lock' && "
		"printf abc | gzip "
		">'%s/messages/a9/a9993e364706816aba3e25717850c26c9cd0d89d.gz'",
		adir, adir, adir, adir, adir, adir, adir);
	test_assert(system(cmd) == 0);
	free(cmd);
	const char *abc = "a9993e364706816aba3e25717850c26c9cd0d89d";
	test_assert(backup_archive_open(adir, BACKUP_OPEN_READ, &ar, &err) ==
		    0);
	if (!ar)
		goto out;
	test_assert_int(ar->format, 1);
	struct buf out = BUF_INIT;
	test_assert(backup_object_read(ar, BACKUP_MESSAGES, abc, 3, &out, -1,
				       &err) == 0);
	test_assert_str(out.s, "abc");
	backup_archive_close(&ar);
	test_assert(backup_archive_open(adir, BACKUP_OPEN_CREATE, &ar, &err) ==
		    0);
	if (!ar)
		goto out;
	test_assert(backup_object_exists(ar, BACKUP_MESSAGES, abc));
	test_assert(backup_object_put_mem(ar, BACKUP_MESSAGES, "abc", 3, sha,
					  &err) == 0);
	test_assert_int(ar->new_objects, 0);
	test_assert(backup_archive_sync(ar, &err) == 0);
	test_assert_int(ar->format, 1); /* no pack yet */
	test_assert(backup_object_put_mem(ar, BACKUP_MESSAGES, "abcd", 4, sha,
					  &err) == 0);
	test_assert(backup_archive_sync(ar, &err) == 0);
	test_assert_int(ar->format, 2);
	backup_archive_close(&ar);
	char *fp = xasprintf("%s/FORMAT", adir);
	size_t len;
	char *f = read_file(fp, &len);
	test_assert_str(f, "cyrus-backup 2\n");
	free(f);
	free(fp);
	test_assert(backup_archive_open(adir, BACKUP_OPEN_READ, &ar, &err) ==
		    0);
	if (!ar)
		goto out;
	buf_reset(&out);
	test_assert(backup_object_read(ar, BACKUP_MESSAGES, abc, 3, &out, -1,
				       &err) == 0);
	test_assert(backup_object_read(ar, BACKUP_MESSAGES, sha, 4, &out, -1,
				       &err) == 0);
	test_assert_str(out.s, "abcabcd");
	buf_release(&out);
	backup_archive_close(&ar);
out:
	free(adir);
	rm_rf(dir);
	free(dir);
	test_end();
}

static void test_pack_prune(void)
{
	test_begin("packs: prune removes, rewrites, keeps; duplicates resolved");
	char *dir = scratch();
	char *adir = xasprintf("%s/a", dir);
	char shas[NPACKMSG][BACKUP_SHA1_HEX];
	struct error err = ERROR_INIT;
	struct backup_shaset keep = { 0 };
	struct backup_prune_stats st;
	setenv("CYRUS_TOOLKIT_NOSYNC", "1", 1);
	setenv("CYRUS_BACKUP_MEMBER_SIZE", "6000", 1);
	setenv("CYRUS_BACKUP_PACK_SIZE", "30000", 1);
	struct backup_archive *ar = pack_fill(adir, shas, 60);
	unsetenv("CYRUS_BACKUP_MEMBER_SIZE");
	unsetenv("CYRUS_BACKUP_PACK_SIZE");
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
	test_assert(backup_archive_open(adir, BACKUP_OPEN_PRUNE, &ar, &err) ==
		    0);
	if (!ar)
		goto out;
	test_assert(backup_packs_prune(ar, &keep, 0, true, &st, &err) == 0);
	test_assert(st.removed >= 1 && st.rewritten >= 1);
	test_assert_int(st.objects, 22);
	test_assert(backup_packs_prune(ar, &keep, 0, false, &st, &err) == 0);
	test_assert_int(st.objects, 22);
	test_assert(st.bytes > 0);
	backup_archive_close(&ar);
	test_assert(backup_archive_open(adir, BACKUP_OPEN_READ, &ar, &err) ==
		    0);
	if (!ar)
		goto out;
	for (size_t i = 0; i < backup_pack_count(ar); i++)
		test_assert_idx(backup_pack_check(ar, i, true, &err) == 0, i);
	for (int i = 0; i < 60; i++)
		test_assert_idx(pack_check_msg(ar, shas[i], i, &err) ==
				(backup_shaset_has(&keep, shas[i])
					 ? 0 : ERR_NOINPUT), i);
	backup_archive_close(&ar);

	/* A rewrite cut short after the new pack is in: both packs hold
	 * the kept messages; the next prune keeps one of them. */
	char *cmd = xasprintf("cd '%s/packs' && mkdir ../keep && cp * ../keep",
			      adir);
	test_assert(system(cmd) == 0);
	free(cmd);
	backup_shaset_release(&keep);
	for (int i = 0; i < 30; i++)
		if (i != 12 && i != 13)
			backup_shaset_add(&keep, shas[i]);
	error_clear(&err);
	test_assert(backup_archive_open(adir, BACKUP_OPEN_PRUNE, &ar, &err) ==
		    0);
	test_assert(ar && backup_packs_prune(ar, &keep, 0, false, &st, &err) ==
			  0);
	if (err.kind)
		printf("# %s\n", err.msg);
	backup_archive_close(&ar);
	cmd = xasprintf("cd '%s/packs' && cp -n ../keep/* .", adir);
	test_assert(system(cmd) == 0);
	free(cmd);
	test_assert(backup_archive_open(adir, BACKUP_OPEN_PRUNE, &ar, &err) ==
		    0);
	if (!ar)
		goto out;
	size_t before = backup_pack_count(ar);
	/* --max-unused 100: nothing rewritten, only what is all dead goes */
	test_assert(backup_packs_prune(ar, &keep, 100, false, &st, &err) == 0);
	test_assert_int(st.rewritten, 0);
	test_assert(st.removed >= 1);
	test_assert(backup_packs_prune(ar, &keep, 0, false, &st, &err) == 0);
	backup_archive_close(&ar);
	test_assert(backup_archive_open(adir, BACKUP_OPEN_READ, &ar, &err) ==
		    0);
	if (!ar)
		goto out;
	test_assert(backup_pack_count(ar) < before);
	for (int i = 0; i < 60; i++)
		test_assert_idx(pack_check_msg(ar, shas[i], i, &err) ==
				(backup_shaset_has(&keep, shas[i])
					 ? 0 : ERR_NOINPUT), i);
	/* Each kept message in one pack only. */
	cmd = xasprintf("test $(zcat '%s'/packs/*.idx.gz | "
			"grep -c '^[0-9a-f]\\{40\\}\t') = 28", adir);
	test_assert(system(cmd) == 0);
	free(cmd);
	backup_archive_close(&ar);
	/* Nothing kept: no pack left. */
	backup_shaset_release(&keep);
	test_assert(backup_archive_open(adir, BACKUP_OPEN_PRUNE, &ar, &err) ==
		    0);
	test_assert(ar && backup_packs_prune(ar, &keep, 0, false, &st, &err) ==
			  0);
	backup_archive_close(&ar);
	cmd = xasprintf("test -z \"$(ls '%s/packs')\"", adir);
	test_assert(system(cmd) == 0);
	free(cmd);
out:
	backup_shaset_release(&keep);
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
		test_packs, test_pack_damage, test_format1, test_pack_prune,
		test_not_archives, test_shaset, NULL,
	};
	return test_run(tests);
}
