/*
 * cyrus reconstruct (cyrreconstruct): rebuild cyrus.index and cyrus.cache
 * of mailboxes from their message files, as Cyrus 3.6.1's reconstruct
 * (imap/reconstruct.c, mailbox_reconstruct in imap/mailbox.c) does, with
 * its options, per-mailbox stdout lines and exit codes.
 *
 * Beyond the real one: every cache record is checked against the cache_crc
 * of its index record; a garbled or truncated record is rebuilt from the
 * message file ("NAME rewrote cache for UID ..." as the real one prints
 * for what it does detect), and -n reports it ("NAME uid UID bad cache
 * record: REASON"). Progress on stderr when it is a tty. -j N (--jobs,
 * default one per CPU, -j 1 sequential) reconstructs whole users in N
 * worker processes (jobs.c), with the same locks, printing what the
 * sequential run prints in the same order. Arguments are external names
 * (user/bob with unixhierarchysep), matched as the real findall does.
 *
 * Differences, on purpose: a lost cyrus.header is rebuilt with the
 * mailboxes.db uniqueid (the real one makes a new uniqueid, which moves a
 * uuid-layout mailbox's directory away from its files); quota usage is
 * not adjusted (run quota -f); a lost index gets highestmodseq from
 * mailboxes.db's modseqs, not from the user's modseq counter. -p and -f
 * without -x import the old cyrus.header found by name (uniqueid, ACL,
 * uidvalidity), where the real 3.6.1 writes an entry without uniqueid and
 * crashes (SIGSEGV); with -x both create anew as the real one does. -f
 * runs sequentially (-j is ignored).
 */
#include "compat.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <getopt.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "cache.h"
#include "commands.h"
#include "config.h"
#include "cyrus.h"
#include "cyrusdb.h"
#include "error.h"
#include "jobs.h"
#include "log.h"
#include "mailbox.h"
#include "mboxlist.h"
#include "progress.h"
#include "mboxname.h"
#include "mboxops.h"
#include "mboxpath.h"
#include "message.h"
#include "mimeparse.h"
#include "xmalloc.h"

struct opts {
	bool changes, do_stat, parse, quiet, guid_rewrite, guid_unlink;
	bool ignore_odd, remove_odd, prefer_mboxlist, update_uniqueids;
	bool recurse, users, paths, fflag, xflag;
	int setversion;
	const char *part;
};

struct ctx {
	struct opts o;
	const struct config *cfg;
	struct mboxlist *ml;
	struct mboxlist_entry **ents;
	char **extnames; /* ents[i]'s name as the admin sees it */
	size_t nents;
	bool *visited;
	size_t *work, nwork; /* indexes into ents, in the real tool's order */
	size_t *groups, ngroups; /* work[groups[g]..groups[g+1]): one user */
	unsigned jobs;       /* -j: worker processes, 1: none */
	int rc;
	struct progress bar; /* on a tty only, and not with -q */
	bool want_progress;
	char **found, **foundpart; /* -f: discovered, with the parent's part */
	size_t nfound;
	const char *prog;
	bool stop;           /* a uniqueid clash without -I: exit 1 */
};

/* A message file found in a mailbox directory. */
struct found {
	uint32_t uid;
	bool archive;
};

static int found_cmp(const void *a, const void *b)
{
	const struct found *x = a, *y = b;
	return x->uid < y->uid ? -1 : x->uid > y->uid;
}

static bool parse_datafilename(const char *p, uint32_t *uid)
{
	uint64_t v = 0;
	const char *s = p;
	if (!isdigit((unsigned char)*s))
		return false;
	while (isdigit((unsigned char)*s)) {
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > UINT32_MAX)
			return false;
		s++;
	}
	if (s[0] != '.' || s[1])
		return false;
	*uid = (uint32_t)v;
	return true;
}

/* imparse_isatom of 3.6.1: what a user flag name may be. */
static bool is_atom(const char *s)
{
	size_t len = 0;
	if (!*s)
		return false;
	for (; *s; s++, len++) {
		unsigned char c = (unsigned char)*s;
		if ((c & 0x80) || c < 0x1f || c == 0x7f || c == ' ' ||
		    c == '{' || c == '(' || c == ')' || c == '"' || c == '%' ||
		    c == '*' || c == '\\')
			return false;
	}
	return len < 1024;
}

static void scan_dir(const char *name, const char *dir, bool archive,
		     const struct opts *o, struct found **f, size_t *n,
		     size_t *alloc)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	if (!d)
		return;
	while ((de = readdir(d)) != NULL) {
		const char *p = de->d_name;
		uint32_t uid;
		if (*p == '.' || !strncmp(p, "cyrus.", 6))
			continue;
		if (parse_datafilename(p, &uid)) {
			if (*n == *alloc) {
				*alloc = *alloc ? 2 * *alloc : 64;
				*f = xrealloc(*f, *alloc * sizeof(**f));
			}
			(*f)[*n].uid = uid;
			(*f)[(*n)++].archive = archive;
			continue;
		}
		char *path = xasprintf("%s/%s", dir, p);
		struct stat st;
		if (stat(path, &st) == 0 && !S_ISDIR(st.st_mode) &&
		    !o->ignore_odd) {
			printf("%s odd file %s\n", name, path);
			if (o->remove_odd) {
				if (o->changes)
					unlink(path);
			} else {
				printf("run reconstruct with -O to remove odd "
				       "files\n");
			}
		}
		free(path);
	}
	closedir(d);
}

/* Maps a whole file; *len_r 0 and NULL data for an empty one. */
static int map_file(const char *path, const char **data_r, size_t *len_r,
		    struct stat *st_r)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	*len_r = (size_t)st.st_size;
	*data_r = NULL;
	if (st.st_size > 0) {
		void *m = mmap(NULL, (size_t)st.st_size, PROT_READ,
			       MAP_PRIVATE, fd, 0);
		if (m == MAP_FAILED) {
			int e = errno;
			close(fd);
			errno = e;
			return -1;
		}
		*data_r = m;
	}
	if (st_r)
		*st_r = st;
	close(fd);
	return 0;
}

static void unmap_file(const char *data, size_t len)
{
	if (data)
		munmap((void *)data, len);
}

/* The state of one mailbox being rebuilt. */
struct rebuild {
	const char *name;
	struct mailbox_header h;
	uint32_t header_crc;
	struct mailbox_index idx;
	struct buf cache;       /* the new cyrus.cache image */
	const char *oldcache;   /* the old image, mapped */
	size_t oldcache_len;
	struct mailbox_record *recs;
	size_t nrecs, arecs;
	char *datapath, *archpath;
	uint32_t now;
	bool dirty;
	bool failed;            /* something left unrepaired: exit 65 */
	const char *prog;
	bool uniqueid_changed;  /* -I: a new uniqueid in the header */
	struct found *disc;     /* files to append under a new UID */
	size_t ndisc, adisc;
};

static void add_disc(struct rebuild *rb, uint32_t uid, bool archive)
{
	if (rb->ndisc == rb->adisc) {
		rb->adisc = rb->adisc ? 2 * rb->adisc : 16;
		rb->disc = xrealloc(rb->disc, rb->adisc * sizeof(*rb->disc));
	}
	rb->disc[rb->ndisc].uid = uid;
	rb->disc[rb->ndisc].archive = archive;
	rb->ndisc++;
}

static void add_record(struct rebuild *rb, const struct mailbox_record *r)
{
	if (rb->nrecs == rb->arecs) {
		rb->arecs = rb->arecs ? 2 * rb->arecs : 64;
		rb->recs = xrealloc(rb->recs, rb->arecs * sizeof(*rb->recs));
	}
	rb->recs[rb->nrecs++] = *r;
}

static char *msg_path(const struct rebuild *rb, uint32_t uid, bool archive)
{
	return xasprintf("%s/%u.", archive ? rb->archpath : rb->datapath,
			 uid);
}

static uint64_t next_modseq(struct rebuild *rb)
{
	rb->dirty = true;
	return ++rb->idx.h.highestmodseq;
}

/*
 * Parses the message file into r's derived fields and a cache record
 * appended to rb->cache. Returns -1 if the file cannot be read.
 */
/*
 * A message file begins with a header field or with the empty line of a
 * message without header; anything else (a binary, an archive, an HTML
 * page saved into the spool) is not a message.
 */
static bool looks_like_message(const char *data, size_t len)
{
	size_t i = 0;
	if (!len || data[0] == '\n' || (len > 1 && data[0] == '\r' &&
					  data[1] == '\n'))
		return true;
	for (; i < len && i < 1000; i++) {
		unsigned char ch = (unsigned char)data[i];
		if (ch == ':')
			return i > 0;
		if (ch <= ' ' || ch >= 0x7f)
			return false;
	}
	return false;
}

static int parse_into(struct rebuild *rb, const char *path,
		      struct mailbox_record *r, struct stat *st_r)
{
	const char *data;
	size_t len;
	struct message_info mi;
	struct buf rec = BUF_INIT;
	uint32_t crc = 0;

	if (map_file(path, &data, &len, st_r) < 0) {
		fprintf(stderr, "%s: '%s' uid %u: cannot read '%s': %s; left "
			"as it is\n", rb->prog, rb->name, r->uid, path,
			strerror(errno));
		rb->failed = true;
		return -1;
	}
	if (!looks_like_message(data, len))
		fprintf(stderr, "%s: '%s' uid %u: '%s' is not a message (no "
			"header field on its first line); indexed as it is\n",
			rb->prog, rb->name, r->uid, path);
	mimeparse_message(data ? data : "", len, &mi, NULL, &rec, &crc);
	unmap_file(data, len);
	r->size = mi.size;
	r->header_size = mi.header_size;
	r->sentdate = mi.sentdate;
	r->gmtime = mi.gmtime;
	memcpy(r->guid, mi.guid, sizeof(r->guid));
	r->cache_version = MAILBOX_CACHE_MINOR_VERSION;
	r->cache_crc = cache_file_append(&rb->cache, rec.s, rec.len,
					 &r->cache_offset);
	(void)crc;
	buf_release(&rec);
	return 0;
}

static void date_defaults(struct mailbox_record *r)
{
	struct message_info mi;
	memset(&mi, 0, sizeof(mi));
	mi.sentdate = r->sentdate;
	mi.gmtime = r->gmtime;
	message_info_date_defaults(&mi, (time_t)r->internaldate);
	r->sentdate = mi.sentdate;
	r->gmtime = mi.gmtime;
}

static bool records_match(const char *name, const struct mailbox_record *a,
			  const struct mailbox_record *b)
{
	bool m = true;
#define CMP(f, label)                                                       \
	if (a->f != b->f) {                                                 \
		printf("%s uid %u mismatch: " label "\n", name, b->uid);    \
		m = false;                                                  \
	}
	CMP(internaldate, "internaldate")
	CMP(sentdate, "sentdate")
	CMP(size, "size")
	CMP(header_size, "header_size")
	CMP(gmtime, "gmtime")
	CMP(savedate, "savedate")
	CMP(createdmodseq, "createdmodseq")
	CMP(system_flags, "systemflags")
	CMP(internal_flags, "internalflags")
#undef CMP
	if (memcmp(a->user_flags, b->user_flags, sizeof(a->user_flags))) {
		printf("%s uid %u mismatch: userflags\n", name, b->uid);
		m = false;
	}
	if (memcmp(a->guid, b->guid, sizeof(a->guid))) {
		printf("%s uid %u mismatch: guid\n", name, b->uid);
		m = false;
	}
	if (a->cache_version != b->cache_version || a->cache_crc != b->cache_crc)
		m = false;
	return m;
}

/* An existing record: check it against its file, as compare_update. */
static void check_record(struct ctx *c, struct rebuild *rb,
			 struct mailbox_record *r, bool have_file,
			 const uint32_t valid_flags[4])
{
	const struct opts *o = &c->o;
	char *path = msg_path(rb, r->uid,
			      (r->internal_flags & MAILBOX_FLAG_ARCHIVED) != 0);
	struct stat st;
	bool reparse = o->parse, repack = false, did_stat = false;
	struct mailbox_record copy;

	if (have_file && o->do_stat) {
		if (stat(path, &st) < 0 || st.st_size == 0)
			have_file = false;
		else if (r->size != (uint32_t)st.st_size)
			reparse = true;
		did_stat = true;
	}
	if (!have_file) {
		if (!(r->internal_flags & MAILBOX_FLAG_UNLINKED)) {
			printf("%s uid %u not found\n", rb->name, r->uid);
			if (o->changes) {
				unlink(path);
				r->internal_flags |= MAILBOX_FLAG_EXPUNGED |
						     MAILBOX_FLAG_UNLINKED;
				rb->idx.h.options |= MAILBOX_OPT_NEEDS_REPACK;
				r->modseq = next_modseq(rb);
				r->last_updated = rb->now;
			}
		}
		add_record(rb, r);
		goto out;
	}

	/* The cache record, checked as imapd checks it before use. */
	enum cache_check cc = cache_check_record(
		(const unsigned char *)rb->oldcache, rb->oldcache_len, r, NULL);
	if (cc != CACHE_OK) {
		reparse = true;
		repack = true;
		if (!o->changes && cc != CACHE_NO_OFFSET)
			printf("%s uid %u bad cache record: %s\n", rb->name,
			       r->uid, cache_check_string(cc));
	}
	copy = *r;
	if (!r->internaldate)
		reparse = true;
	size_t mark = rb->cache.len;

	if (reparse) {
		struct mailbox_record n = *r;
		if (parse_into(rb, path, &n, did_stat ? NULL : &st) < 0) {
			/*
			 * The real one expunges the record of a file it
			 * cannot read; we keep it: the file is still there
			 * and may be readable again once its mode is fixed.
			 */
			printf("%s uid %u failed to parse\n", rb->name, r->uid);
			add_record(rb, r);
			goto out;
		}
		did_stat = true;
		if (memcmp(n.guid, copy.guid, sizeof(n.guid))) {
			buf_setlen(&rb->cache, mark);
			printf("%s uid %u guid mismatch\n", rb->name, r->uid);
			if (!o->changes) {
				add_record(rb, r);
				goto out;
			}
			if (r->internal_flags & MAILBOX_FLAG_EXPUNGED)
				printf("%s uid %u already expunged, unlinking\n",
				       rb->name, r->uid);
			else if (o->guid_rewrite) {
				/* The file is another message: appended
				 * under a new UID with the discovered ones. */
				add_disc(rb, r->uid, (r->internal_flags &
						      MAILBOX_FLAG_ARCHIVED) != 0);
				printf("%s uid %u marking for uid upgrade\n",
				       rb->name, r->uid);
			}
			else if (o->guid_unlink)
				printf("%s uid %u unlinking as requested with "
				       "-U\n", rb->name, r->uid);
			else {
				printf("run reconstruct with -R to fix or -U "
				       "to remove\n");
				add_record(rb, r);
				goto out;
			}
			r->internal_flags |= MAILBOX_FLAG_EXPUNGED |
					     MAILBOX_FLAG_UNLINKED;
			rb->idx.h.options |= MAILBOX_OPT_NEEDS_UNLINK;
			r->modseq = next_modseq(rb);
			r->last_updated = rb->now;
			add_record(rb, r);
			goto out;
		}
		uint64_t oldoff = r->cache_offset;
		*r = n;
		if (!r->internaldate)
			r->internaldate = copy.internaldate;
		if (!r->internaldate)
			r->internaldate = (uint32_t)st.st_mtime;
		date_defaults(r);
		if (!o->changes) {
			buf_setlen(&rb->cache, mark);
			r->cache_offset = oldoff;
		}
	}

	if (r->modseq > rb->idx.h.highestmodseq) {
		printf("%s uid %u future modseq %llu found\n", rb->name, r->uid,
		       (unsigned long long)r->modseq);
		rb->idx.h.highestmodseq = r->modseq;
		rb->dirty = true;
	}
	if (r->uid > rb->idx.h.last_uid) {
		printf("%s future uid %u found\n", rb->name, r->uid);
		rb->idx.h.last_uid = r->uid;
		rb->dirty = true;
	}
	for (int i = 0; i < 4; i++)
		r->user_flags[i] &= valid_flags[i];

	if (records_match(rb->name, &copy, r) && !repack) {
		if (reparse) {
			/* Same record, same cache bytes: keep the old one. */
			buf_setlen(&rb->cache, mark);
			r->cache_offset = copy.cache_offset;
		}
		add_record(rb, r);
		goto out;
	}
	if (!o->changes) {
		add_record(rb, &copy);
		goto out;
	}
	if (repack || copy.cache_crc != r->cache_crc) {
		rb->idx.h.options |= MAILBOX_OPT_NEEDS_REPACK;
		printf("%s rewrote cache for %u (offset %llu to %llu, crc %u to "
		       "%u/%u)\n", rb->name, r->uid,
		       /* a parse zeroes the offset before Cyrus prints it */
		       (unsigned long long)(reparse ? 0 : copy.cache_offset),
		       (unsigned long long)r->cache_offset, copy.cache_crc,
		       r->cache_crc, r->cache_crc);
	}
	r->modseq = next_modseq(rb);
	r->last_updated = rb->now;
	add_record(rb, r);
out:
	free(path);
}

/* A file without a record: append it (found / rediscovered). */
static void append_file(struct ctx *c, struct rebuild *rb,
			const struct found *f)
{
	char *path = msg_path(rb, f->uid, f->archive);
	struct stat st;
	struct mailbox_record r;

	memset(&r, 0, sizeof(r));
	if (stat(path, &st) < 0 || st.st_size == 0) {
		printf("%s uid %u not found", rb->name, f->uid);
		if (c->o.changes)
			unlink(path);
		goto out;
	}
	if (f->uid > rb->idx.h.last_uid) {
		printf("%s uid %u found - adding\n", rb->name, f->uid);
		r.uid = f->uid;
	} else {
		printf("%s uid %u rediscovered - appending\n", rb->name,
		       f->uid);
		r.uid = rb->idx.h.last_uid + 1;
		if (!c->o.changes)
			goto out;
		char *np = msg_path(rb, r.uid, f->archive);
		if (rename(path, np) < 0) {
			free(np);
			goto out;
		}
		free(path);
		path = np;
	}
	if (!c->o.changes)
		goto out;
	if (parse_into(rb, path, &r, &st) < 0) {
		/* Not indexed, but its UID is never given to another. */
		if (r.uid > rb->idx.h.last_uid)
			rb->idx.h.last_uid = r.uid;
		rb->dirty = true;
		goto out;
	}
	if (f->archive)
		r.internal_flags |= MAILBOX_FLAG_ARCHIVED;
	r.internaldate = (uint32_t)st.st_mtime;
	date_defaults(&r);
	r.modseq = next_modseq(rb);
	r.createdmodseq = r.modseq;
	r.last_updated = rb->now;
	r.savedate = rb->now;
	if (r.uid > rb->idx.h.last_uid)
		rb->idx.h.last_uid = r.uid;
	if (r.internaldate > rb->idx.h.last_appenddate)
		rb->idx.h.last_appenddate = r.internaldate;
	add_record(rb, &r);
out:
	free(path);
}

static void compare_headers(const char *name,
			    const struct mailbox_index_header *a,
			    const struct mailbox_index_header *b)
{
	if (a->quota_mailbox_used != b->quota_mailbox_used)
		printf("%s updating quota_mailbox_used: %llu => %llu\n", name,
		       (unsigned long long)a->quota_mailbox_used,
		       (unsigned long long)b->quota_mailbox_used);
	if (a->quota_annot_used != b->quota_annot_used)
		printf("%s updating quota_annot_used: %u => %u\n", name,
		       a->quota_annot_used, b->quota_annot_used);
#define UPD(f)                                                              \
	if (a->f != b->f)                                                   \
		printf("%s: updating " #f " %u => %u\n", name, a->f, b->f);
	UPD(answered)
	UPD(flagged)
	UPD(deleted)
	UPD(exists)
#undef UPD
	if (a->sync_crc != b->sync_crc)
		printf("%s: updating sync_crc %u => %u\n", name, a->sync_crc,
		       b->sync_crc);
	if (a->sync_crc_annot != b->sync_crc_annot)
		printf("%s: updating sync_crc_annot %u => %u\n", name,
		       a->sync_crc_annot, b->sync_crc_annot);
}

/* Per-message annotations (cyrus.annotations) are not counted. */
static uint32_t annot_sum(const struct mailbox_record *r, size_t n,
			  uint32_t version)
{
	uint32_t crc = MAILBOX_CRC_INIT_ANNOT;
	for (size_t i = 0; i < n; i++)
		crc ^= mailbox_record_annot_crc(&r[i], version);
	return crc;
}

static void report(struct ctx *c, const char *name, const struct error *err)
{
	fprintf(stderr, "%s: %s Failed to reconstruct mailbox\n", name,
		err->msg);
	if (c->rc == 0)
		c->rc = 0; /* the real tool carries on and exits 0 */
}

/* A new uniqueid as Debian's Cyrus (built without libuuid) makes them:
 * 24 characters of [0-9a-z]. */
static char *new_uniqueid(void)
{
	unsigned char rnd[24];
	char *out = xmalloc(25);
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, rnd, sizeof(rnd)) : -1;
	if (fd >= 0)
		close(fd);
	if (n != (ssize_t)sizeof(rnd)) {
		uint64_t x = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
		for (size_t i = 0; i < sizeof(rnd); i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			rnd[i] = (unsigned char)x;
		}
	}
	for (size_t i = 0; i < sizeof(rnd); i++) {
		unsigned v = rnd[i] % 36u;
		out[i] = (char)(v < 10 ? '0' + v : 'a' + v - 10);
	}
	out[24] = '\0';
	return out;
}

static bool str_differ(const char *a, const char *b)
{
	if (!a || !b)
		return a != b;
	return strcmp(a, b) != 0;
}

/*
 * The I record of ne's uniqueid against ne (the N record as it will be
 * written), as 3.6.1's reconstruct checks it: missing, naming another
 * mailbox (with -I the mailbox gets a new uniqueid, without the run
 * stops: -1), or with other values; *dirty when the entry (and so its I
 * record) is to be rewritten.
 */
static int check_byid(struct ctx *c, struct rebuild *rb,
		      struct mboxlist_entry *ne, bool *dirty)
{
	struct mboxlist_entry *bi = NULL;
	struct error err = ERROR_INIT;
	int r = 0;

	if (!ne->uniqueid)
		return 0;
	if (mboxlist_lookup_by_uniqueid(c->ml, ne->uniqueid, &bi, NULL,
					&err) < 0) {
		if (err.kind == ERR_NOINPUT) {
			printf("Missing mboxlist entry for uniqueid - will "
			       "rewrite %s (%s)\n", ne->name, ne->uniqueid);
			*dirty = true;
		} else {
			printf("Error reading mailboxesdb for %s\n", ne->name);
			r = -1;
		}
		goto out;
	}
	if (bi->mbtype & MBTYPE_RESERVE) {
		/* Cyrus reads a reserved I record as an error. */
		printf("Error reading mailboxesdb for %s\n", ne->name);
		r = -1;
		goto out;
	}
	if (strcmp(bi->name, ne->name)) {
		printf("Wrong uniqueid! %s (should be %s)\n", bi->name,
		       ne->name);
		if (!c->o.update_uniqueids) {
			r = -1;
			goto out;
		}
		char *id = new_uniqueid();
		free(rb->h.uniqueid);
		rb->h.uniqueid = xstrdup(id);
		free(ne->uniqueid);
		ne->uniqueid = id;
		rb->uniqueid_changed = true;
		*dirty = true;
		goto out;
	}
	if (ne->uidvalidity != bi->uidvalidity) {
		printf("mismatched uidvalidity byid %s (%u %u)\n", ne->name,
		       ne->uidvalidity, bi->uidvalidity);
		*dirty = true;
	}
	if (ne->mbtype != bi->mbtype) {
		printf("mismatched mbtype byid %s (%u %u)\n", ne->name,
		       ne->mbtype, bi->mbtype);
		*dirty = true;
	}
	if (str_differ(ne->partition, bi->partition)) {
		printf("mismatched partition byid %s (%s %s)\n", ne->name,
		       ne->partition ? ne->partition : "(null)",
		       bi->partition ? bi->partition : "(null)");
		*dirty = true;
	}
	if (str_differ(ne->server, bi->server)) {
		printf("mismatched server byid %s (%s %s)\n", ne->name,
		       ne->server ? ne->server : "(null)",
		       bi->server ? bi->server : "(null)");
		*dirty = true;
	}
	if (str_differ(ne->acl, bi->acl)) {
		printf("mismatched acl byid %s (%s %s)\n", ne->name,
		       ne->acl ? ne->acl : "(null)",
		       bi->acl ? bi->acl : "(null)");
		*dirty = true;
	}
out:
	mboxlist_entry_free(&bi);
	error_clear(&err);
	return r;
}

static int reconstruct_one(struct ctx *c, const struct mboxlist_entry *e)
{
	const struct opts *o = &c->o;
	struct error err = ERROR_INIT;
	struct rebuild rb;
	char *hpath = NULL, *ipath = NULL, *cpath = NULL;
	struct mailbox_lock lk = MAILBOX_LOCK_INIT;
	int ifd = -1;
	bool have_index, have_header, index_rebuilt = false;
	bool header_dirty = false;
	struct mboxlist_entry *ne = NULL;
	bool legacy = (e->mbtype & MBTYPE_LEGACY_DIRS) != 0;
	struct found *files = NULL;
	size_t nfiles = 0, afiles = 0;
	int r = -1;

	memset(&rb, 0, sizeof(rb));
	rb.name = e->name;
	rb.prog = c->prog;
	rb.now = (uint32_t)time(NULL);
	buf_init(&rb.cache);
	mailbox_header_init(&rb.h);

	if (mailbox_paths(c->cfg, &c->ml->ns, e, &hpath, &ipath, &cpath,
			  &rb.datapath, &rb.archpath, &err) < 0)
		goto fail;
	if (mailbox_lock_names(c->cfg, &c->ml->ns, e->name, e->uniqueid,
			       legacy, LOCK_EXCLUSIVE, false, &lk, &err) < 0)
		goto fail;
	ifd = open(ipath, O_RDWR | O_CLOEXEC);
	if (ifd >= 0 && lock_fd(ifd, LOCK_EXCLUSIVE, true) < 0) {
		error_sys(&err, ERR_IO, errno, "cannot lock %s", ipath);
		goto fail;
	}

	/*
	 * An index of a newer Cyrus is not ours to rewrite: its records
	 * carry state we cannot read and would lose. The mailbox is left as
	 * it is (the real one rebuilds it as version 17).
	 */
	if (ifd >= 0) {
		unsigned char vb[12];
		if (pread(ifd, vb, sizeof(vb), 0) == (ssize_t)sizeof(vb)) {
			uint32_t v = (uint32_t)vb[8] << 24 |
				     (uint32_t)vb[9] << 16 |
				     (uint32_t)vb[10] << 8 | vb[11];
			if (v > MAILBOX_MINOR_VERSION && v < 1000) {
				fprintf(stderr, "%s: cannot reconstruct '%s': "
					"cyrus.index is version %u, newer "
					"than %d; left as it is\n", c->prog,
					e->name, v, MAILBOX_MINOR_VERSION);
				c->rc = EX_DATAERR;
				r = -1;
				goto out;
			}
		}
	}

	/* 1. The index, then the header (mailbox_reconstruct_create). */
	have_index = ifd >= 0 &&
		     mailbox_index_read_fd(ifd, &rb.idx, NULL, &err) == 0;
	if (ifd >= 0 && !have_index) {
		/* Kept beside it (cyrus.* files are never odd files). */
		fprintf(stderr, "%s: '%s': cyrus.index: %s; rebuilt from the "
			"message files%s\n", c->prog, e->name, err.msg,
			o->changes ? ", the old one kept as "
				     "cyrus.index.damaged" : "");
		if (o->changes) {
			char *keep = xasprintf("%s.damaged", ipath);
			if (link(ipath, keep) < 0 && errno == EEXIST) {
				unlink(keep);
				if (link(ipath, keep) < 0)
					fprintf(stderr, "%s: cannot keep '%s': "
						"%s\n", c->prog, keep,
						strerror(errno));
			}
			free(keep);
		}
	}
	error_clear(&err);
	have_header = mailbox_header_read(hpath, &rb.h, &rb.header_crc, NULL,
					  &err) == 0;
	error_clear(&err);
	if (!have_index) {
		printf("%s: failed to read index header\n", e->name);
		uint32_t uidv = rb.now;
		if (e->uidvalidity >= uidv)
			uidv = e->uidvalidity + 1;
		uint64_t ms = e->foldermodseq > e->createdmodseq ?
				      e->foldermodseq : e->createdmodseq;
		mailbox_index_release(&rb.idx);
		mailbox_index_header_new(&rb.idx.h, uidv, ms + 1,
					 e->createdmodseq ? e->createdmodseq :
							    ms + 1,
					 MAILBOX_OPT_POP3_NEW_UIDL, rb.now);
		index_rebuilt = true;
		rb.dirty = true;
	}
	if (!have_header) {
		if (have_index)
			printf("%s: failed to read header file\n", e->name);
		mailbox_header_release(&rb.h);
		mailbox_header_init(&rb.h);
		rb.h.mbtype = e->mbtype & 0xf;
		rb.h.name = xstrdup(e->name);
		rb.h.uniqueid = e->uniqueid ? xstrdup(e->uniqueid) : NULL;
		rb.h.acl = e->acl ? xstrdup(e->acl) : NULL;
		rb.dirty = true;
	} else if (have_index && rb.header_crc != rb.idx.h.header_file_crc) {
		printf("%s: header file CRC mismatch, correcting\n", e->name);
		rb.dirty = true;
	}
	struct mailbox_index_header old = rb.idx.h;
	/* What the stored counters got wrong before any change (Cyrus keeps
	 * them up to date per change, so only this drift is reported). */
	struct mailbox_index_header orig = rb.idx.h;
	if (!index_rebuilt) {
		struct mailbox_record *ok = xcalloc(rb.idx.nrecs + 1,
						    sizeof(*ok));
		size_t nok = 0;
		for (size_t i = 0; i < rb.idx.nrecs; i++)
			if (rb.idx.recs[i].crc_ok)
				ok[nok++] = rb.idx.recs[i];
		mailbox_index_recount(&orig, ok, nok, &rb.h);
		orig.sync_crc_annot = annot_sum(ok, nok, orig.minor_version);
		free(ok);
	}

	/* 2. User flags. */
	uint32_t valid[4] = { 0, 0, 0, 0 };
	for (int f = 0; f < MAILBOX_MAX_USER_FLAGS; f++) {
		if (!rb.h.flagname[f])
			continue;
		if (!is_atom(rb.h.flagname[f])) {
			printf("%s: bogus flag name %d:%s", e->name, f,
			       rb.h.flagname[f]);
			free(rb.h.flagname[f]);
			rb.h.flagname[f] = NULL;
			rb.dirty = true;
			continue;
		}
		valid[f / 32] |= 1u << (f & 31);
	}

	/* 3. The files. */
	scan_dir(e->name, rb.datapath, false, o, &files, &nfiles, &afiles);
	if (strcmp(rb.archpath, rb.datapath))
		scan_dir(e->name, rb.archpath, true, o, &files, &nfiles,
			 &afiles);
	if (nfiles)
		qsort(files, nfiles, sizeof(*files), found_cmp);

	/* The old cache: appended to, as mailbox_append_cache does. */
	struct stat cst;
	if (!index_rebuilt &&
	    map_file(cpath, &rb.oldcache, &rb.oldcache_len, &cst) == 0 &&
	    rb.oldcache_len >= 4) {
		buf_add(&rb.cache, rb.oldcache, rb.oldcache_len);
	} else {
		cache_file_init(&rb.cache, rb.idx.h.generation_no);
	}

	/* 4. Records and files in UID order. */
	size_t fp = 0;
	uint32_t last_seen = 0;
	for (size_t i = 0; i < rb.idx.nrecs; i++) {
		struct mailbox_record rec = rb.idx.recs[i];
		if (!rec.crc_ok || rec.uid <= last_seen) {
			rb.dirty = true; /* wiped, as Cyrus does */
			continue;
		}
		last_seen = rec.uid;
		while (fp < nfiles && files[fp].uid < rec.uid) {
			add_disc(&rb, files[fp].uid, files[fp].archive);
			fp++;
		}
		bool have_file = false;
		while (fp < nfiles && files[fp].uid == rec.uid) {
			if (!have_file) {
				bool arch = files[fp].archive;
				bool flag = rec.internal_flags &
					    MAILBOX_FLAG_ARCHIVED;
				if (arch && !flag) {
					rec.internal_flags |=
						MAILBOX_FLAG_ARCHIVED;
					printf("Marking file as archived %s "
					       "%u\n", e->name, rec.uid);
				} else if (!arch && flag) {
					rec.internal_flags &=
						~MAILBOX_FLAG_ARCHIVED;
					printf("Marking file as not archived "
					       "%s %u\n", e->name, rec.uid);
				}
				have_file = true;
			} else {
				char *p = msg_path(&rb, rec.uid, true);
				printf("Removing duplicate archive file %s\n",
				       p);
				if (o->changes)
					unlink(p);
				free(p);
			}
			fp++;
		}
		check_record(c, &rb, &rec, have_file, valid);
	}
	if (rb.idx.h.last_uid < last_seen) {
		rb.idx.h.last_uid = last_seen;
		rb.dirty = true;
	}
	while (fp < nfiles && files[fp].uid <= rb.idx.h.last_uid) {
		add_disc(&rb, files[fp].uid, files[fp].archive);
		fp++;
	}
	for (; fp < nfiles; fp++)
		append_file(c, &rb, &files[fp]);
	for (size_t i = 0; i < rb.ndisc; i++)
		append_file(c, &rb, &rb.disc[i]);

	/* 6. Counters. */
	mailbox_index_recount(&rb.idx.h, rb.recs, rb.nrecs, &rb.h);
	rb.idx.h.sync_crc_annot = annot_sum(rb.recs, rb.nrecs,
					    rb.idx.h.minor_version);
	if (!index_rebuilt) {
		struct mailbox_index_header shown = rb.idx.h;
		const struct mailbox_index_header *f = &rb.idx.h;
		shown.quota_mailbox_used = f->quota_mailbox_used +
					   old.quota_mailbox_used -
					   orig.quota_mailbox_used;
		shown.answered = f->answered + old.answered - orig.answered;
		shown.flagged = f->flagged + old.flagged - orig.flagged;
		shown.deleted = f->deleted + old.deleted - orig.deleted;
		shown.exists = f->exists + old.exists - orig.exists;
		shown.sync_crc = f->sync_crc ^ old.sync_crc ^ orig.sync_crc;
		shown.sync_crc_annot = f->sync_crc_annot ^ old.sync_crc_annot ^
				       orig.sync_crc_annot;
		compare_headers(e->name, &shown, &rb.idx.h);
	}
	if (memcmp(&old, &rb.idx.h, sizeof(old)))
		rb.dirty = true;
	if (!rb.idx.h.uidvalidity) {
		rb.idx.h.uidvalidity = rb.now;
		rb.dirty = true;
	}
	if (o->setversion && o->setversion != (int)rb.idx.h.minor_version)
		rb.dirty = true;

	/* 7. mailboxes.db against the header and index (written after). */
	ne = mboxlist_entry_new();
	bool edirty = false;
	ne->name = xstrdup(e->name);
	ne->mtime = e->mtime;
	ne->uidvalidity = e->uidvalidity;
	ne->createdmodseq = e->createdmodseq;
	ne->foldermodseq = e->foldermodseq;
	ne->mbtype = e->mbtype;
	ne->partition = e->partition ? xstrdup(e->partition) : NULL;
	ne->server = e->server ? xstrdup(e->server) : NULL;
	ne->acl = e->acl ? xstrdup(e->acl) : NULL;
	ne->uniqueid = e->uniqueid ? xstrdup(e->uniqueid) : NULL;
	if (rb.h.uniqueid && e->uniqueid && strcmp(rb.h.uniqueid, e->uniqueid)) {
		printf("Wrong uniqueid in mbentry, fixing %s (%s -> %s)\n",
		       e->name, e->uniqueid, rb.h.uniqueid);
		free(ne->uniqueid);
		ne->uniqueid = xstrdup(rb.h.uniqueid);
		edirty = true;
	}
	if (check_byid(c, &rb, ne, &edirty) < 0) {
		c->rc = 1;
		c->stop = true;
		r = -1;
		goto out;
	}
	if (rb.uniqueid_changed) {
		rb.dirty = true;
		header_dirty = true;
	}
	if (rb.idx.h.uidvalidity != e->uidvalidity) {
		if (o->prefer_mboxlist && e->uidvalidity) {
			printf("Wrong uidvalidity in mailbox, fixing %s (%u -> "
			       "%u)\n", e->name, rb.idx.h.uidvalidity,
			       e->uidvalidity);
			/* Written on the next run's index; the entry wins. */
		} else {
			printf("Wrong uidvalidity in mbentry, fixing %s (%u -> "
			       "%u)\n", e->name, e->uidvalidity,
			       rb.idx.h.uidvalidity);
			ne->uidvalidity = rb.idx.h.uidvalidity;
			edirty = true;
		}
	}
	const char *hacl = rb.h.acl ? rb.h.acl : "";
	const char *eacl = e->acl ? e->acl : "";
	if (strcmp(hacl, eacl)) {
		printf("Wrong acl in mbentry %s (%s %s)\n", e->name, eacl, hacl);
		if (!o->prefer_mboxlist) {
			free(ne->acl);
			ne->acl = xstrdup(hacl);
			edirty = true;
		}
	}
	/* 8. Commit: cache, header, index (the index names the others). */
	if (o->changes && rb.dirty) {
		uint32_t hcrc = rb.header_crc;
		if (rb.cache.len != rb.oldcache_len ||
		    (rb.oldcache && memcmp(rb.cache.s, rb.oldcache,
					   rb.oldcache_len)) || index_rebuilt)
			if (mailbox_write_file(cpath, rb.cache.s, rb.cache.len,
					       &err) < 0)
				goto fail;
		if (!have_header || header_dirty ||
		    hcrc != rb.idx.h.header_file_crc) {
			if (mailbox_header_write(hpath, &rb.h, &hcrc, &err) <
			    0)
				goto fail;
			rb.idx.h.header_file_crc = hcrc;
		}
		if (o->setversion)
			rb.idx.h.minor_version = (uint32_t)o->setversion;
		if (mailbox_index_write(ipath, &rb.idx.h, rb.recs, rb.nrecs,
					&err) < 0)
			goto fail;
	}

	if (edirty && o->changes) {
		struct cyrusdb_txn *tid = NULL;
		if (mboxlist_update(c->ml, ne, time(NULL), &tid, &err) < 0 ||
		    cyrusdb_commit(c->ml->db, tid) < 0) {
			if (tid)
				cyrusdb_abort(c->ml->db, tid);
			fprintf(stderr, "%s: cannot update mailboxes.db: %s\n",
				e->name, err.msg);
		}
		error_clear(&err);
	}
	mboxlist_entry_free(&ne);

	if (!o->quiet) {
		struct mboxname mbn;
		struct buf ext = BUF_INIT;
		mboxname_init(&mbn);
		mboxname_from_intname(&c->ml->ns, &mbn, e->name);
		if (!mboxname_extname(&c->ml->ns, &mbn, NULL, &ext))
			buf_sets(&ext, e->name);
		printf("%s\n", ext.s);
		buf_release(&ext);
		mboxname_release(&mbn);
	}
	if (o->setversion && o->changes &&
	    (uint32_t)o->setversion != old.minor_version && !index_rebuilt)
		printf("Converted %s version %u to %d\n", e->name,
		       old.minor_version, o->setversion);
	if (rb.failed)
		c->rc = EX_DATAERR;
	r = 0;
	goto out;
fail:
	report(c, e->name, &err);
out:
	mboxlist_entry_free(&ne);
	free(files);
	free(rb.disc);
	unmap_file(rb.oldcache, rb.oldcache_len);
	buf_release(&rb.cache);
	free(rb.recs);
	mailbox_index_release(&rb.idx);
	mailbox_header_release(&rb.h);
	if (ifd >= 0)
		close(ifd);
	mailbox_lock_release(&lk);
	free(hpath);
	free(ipath);
	free(cpath);
	free(rb.datapath);
	free(rb.archpath);
	error_clear(&err);
	fflush(stdout);
	return r;
}

static void discover(struct ctx *c, const struct mboxlist_entry *e);

static int collect(void *rock, const struct mboxlist_entry *e)
{
	struct ctx *c = rock;
	struct mboxlist_entry *d = mboxlist_entry_new();
	d->name = xstrdup(e->name);
	d->mtime = e->mtime;
	d->uidvalidity = e->uidvalidity;
	d->createdmodseq = e->createdmodseq;
	d->foldermodseq = e->foldermodseq;
	d->mbtype = e->mbtype;
	d->partition = e->partition ? xstrdup(e->partition) : NULL;
	d->server = e->server ? xstrdup(e->server) : NULL;
	d->acl = e->acl ? xstrdup(e->acl) : NULL;
	d->uniqueid = e->uniqueid ? xstrdup(e->uniqueid) : NULL;
	struct mboxname mbn;
	struct buf ext = BUF_INIT;
	mboxname_init(&mbn);
	mboxname_from_intname(&c->ml->ns, &mbn, e->name);
	if (!mboxname_extname(&c->ml->ns, &mbn, NULL, &ext))
		buf_sets(&ext, e->name);
	mboxname_release(&mbn);
	c->ents = xrealloc(c->ents, (c->nents + 1) * sizeof(*c->ents));
	c->extnames = xrealloc(c->extnames,
			       (c->nents + 1) * sizeof(*c->extnames));
	c->ents[c->nents] = d;
	c->extnames[c->nents++] = buf_detach(&ext, NULL);
	return 0;
}

/*
 * IMAP LIST wildcards, matched as the real findall does: on the external
 * name (with unixhierarchysep, "user/bob/Sent"); '*' anything, '%' no
 * hierarchy separator.
 */
static bool wild_match(const char *pat, const char *s, char sep)
{
	for (; *pat; pat++, s++) {
		if (*pat == '*' || *pat == '%') {
			for (const char *t = s;; t++) {
				if (wild_match(pat + 1, t, sep))
					return true;
				if (!*t || (*pat == '%' && *t == sep))
					return false;
			}
		}
		if (*pat != *s)
			return false;
	}
	return !*s;
}

static void progress(struct ctx *c, const char *label)
{
	progress_step(&c->bar, label);
}

static void job_before_output(void *rock)
{
	struct ctx *c = rock;
	progress_clear(&c->bar);
}

/*
 * Reconstructs the mailboxes that match: pat (external) if user is NULL,
 * else user's mailboxes (internal name user or below it, as
 * mboxlist_usermboxtree). Users' mailboxes first, then the shared ones,
 * as findall lists them.
 */
static void run_match(struct ctx *c, const char *pat, const char *user)
{
	size_t ulen = user ? strlen(user) : 0;
	for (size_t j = 0; j < 2 * c->nents; j++) {
		size_t i = j % c->nents;
		const struct mboxlist_entry *e = c->ents[i];
		bool isuser = !strncmp(e->name, "user.", 5);
		if ((j < c->nents) != isuser)
			continue;
		if (c->visited[i])
			continue;
		if (user ? strncmp(e->name, user, ulen) ||
				   (e->name[ulen] && e->name[ulen] != '.')
			 : !wild_match(pat, c->extnames[i], c->ml->ns.hier_sep))
			continue;
		if (e->mbtype & (MBTYPE_REMOTE | MBTYPE_INTERMEDIATE |
				 MBTYPE_DELETED | MBTYPE_RESERVE))
			continue;
		c->visited[i] = true;
		c->work = xrealloc(c->work, (c->nwork + 1) * sizeof(*c->work));
		c->work[c->nwork++] = i;
	}
}

/* In a worker: a mailboxes.db handle of its own. */
static int job_init(void *rock)
{
	struct ctx *c = rock;
	struct error err = ERROR_INIT;
	/*
	 * The parent's handle is left alone, not closed: closing it could
	 * touch the file the parent still uses.
	 */
	c->ml = NULL;
	c->bar.on = false;
	if (mboxlist_open(c->cfg, NULL, 0, &c->ml, &err) < 0) {
		fprintf(stderr, "%s: cannot open mailboxes.db: %s\n", c->prog,
			err.msg);
		error_clear(&err);
		return -1;
	}
	return 0;
}

static int job_run(void *rock, size_t g)
{
	struct ctx *c = rock;
	c->rc = 0;
	c->stop = false; /* with -j a clash stops its user only */
	for (size_t k = c->groups[g]; k < c->groups[g + 1] && !c->stop; k++)
		reconstruct_one(c, c->ents[c->work[k]]);
	return c->rc;
}

static void job_done(void *rock, size_t g, int rc)
{
	struct ctx *c = rock;
	if (rc)
		c->rc = rc;
	for (size_t k = c->groups[g]; k < c->groups[g + 1]; k++)
		progress(c, c->extnames[c->work[k]]);
}

/*
 * The work in runs of one user's mailboxes: a worker takes a whole user,
 * since each mailbox takes the user's namespace lock exclusively and two
 * workers in one user would wait for each other.
 */
static void group_work(struct ctx *c)
{
	struct buf prev = BUF_INIT, cur = BUF_INIT;
	c->groups = xcalloc(c->nwork + 1, sizeof(*c->groups));
	for (size_t k = 0; k < c->nwork; k++) {
		struct mboxname mbn;
		bool user;
		mboxname_init(&mbn);
		mboxname_from_intname(&c->ml->ns, &mbn, c->ents[c->work[k]]->name);
		buf_reset(&cur);
		user = mboxname_userid(&mbn, &cur);
		mboxname_release(&mbn);
		if (!k || !user || strcmp(cur.s, prev.s))
			c->groups[c->ngroups++] = k;
		buf_sets(&prev, user ? cur.s : "");
	}
	c->groups[c->ngroups] = c->nwork;
	buf_release(&prev);
	buf_release(&cur);
}

/*
 * Whether some mailbox of the work may meet a uniqueid clash (its I
 * record, by the uniqueid of its header or entry, naming another
 * mailbox), which ends the real run: such a run goes sequentially, so
 * that it stops where the real one stops.
 */
static bool id_names_other(struct ctx *c, const char *id, const char *name)
{
	struct mboxlist_entry *bi = NULL;
	struct error err = ERROR_INIT;
	bool other = false;
	if (id && mboxlist_lookup_by_uniqueid(c->ml, id, &bi, NULL, &err) == 0)
		other = strcmp(bi->name, name) != 0 ||
			(bi->mbtype & MBTYPE_RESERVE);
	else if (id && err.kind != ERR_NOINPUT)
		other = true;
	mboxlist_entry_free(&bi);
	error_clear(&err);
	return other;
}

static bool any_clash(struct ctx *c)
{
	bool clash = false;
	for (size_t k = 0; k < c->nwork && !clash; k++) {
		const struct mboxlist_entry *e = c->ents[c->work[k]];
		struct error err = ERROR_INIT;
		char *hpath = NULL, *ipath = NULL, *cpath = NULL;
		char *dpath = NULL, *apath = NULL;
		clash = id_names_other(c, e->uniqueid, e->name);
		if (!clash && mailbox_paths(c->cfg, &c->ml->ns, e, &hpath,
					    &ipath, &cpath, &dpath, &apath,
					    &err) == 0) {
			struct mailbox_header h;
			uint32_t crc;
			mailbox_header_init(&h);
			if (mailbox_header_read(hpath, &h, &crc, NULL, &err) ==
				    0 && h.uniqueid && e->uniqueid &&
			    strcmp(h.uniqueid, e->uniqueid))
				clash = id_names_other(c, h.uniqueid, e->name);
			mailbox_header_release(&h);
		}
		free(hpath);
		free(ipath);
		free(cpath);
		free(dpath);
		free(apath);
		error_clear(&err);
	}
	return clash;
}

/*
 * The mailboxes found, each whole in one worker (with the same locks as
 * alone), the output in the order of a sequential run.
 */
static void run_work(struct ctx *c)
{
	static const struct jobs_ops ops = { job_init, job_run, job_done,
					     job_before_output };
	if (c->jobs > 1 && c->nwork > 1 && !c->o.fflag && !c->o.update_uniqueids &&
	    !any_clash(c)) {
		group_work(c);
		if (c->ngroups > 1 &&
		    jobs_run(c->ngroups, c->jobs, &ops, c) == 0)
			return;
	}
	for (size_t k = 0; k < c->nwork && !c->stop; k++) {
		const struct mboxlist_entry *e = c->ents[c->work[k]];
		progress_clear(&c->bar);
		if (reconstruct_one(c, e) == 0 && c->o.fflag)
			discover(c, e);
		progress(c, c->extnames[c->work[k]]);
	}
}

static void run_pattern(struct ctx *c, const char *pat)
{
	run_match(c, pat, NULL);
}

/* The internal name of an external one (the admin's view); malloc'd. */
static char *to_intname(struct ctx *c, const char *extname, bool userid)
{
	struct mboxname mbn;
	struct buf in = BUF_INIT;
	struct error err = ERROR_INIT;
	if (userid)
		mboxname_from_userid(&c->ml->ns, &mbn, extname);
	else if (mboxname_from_extname(&c->ml->ns, &mbn, extname, NULL,
				       &err) < 0)
		buf_sets(&in, extname); /* no mailbox has it: matches none */
	if (!in.len)
		mboxname_intname(&c->ml->ns, &mbn, &in);
	mboxname_release(&mbn);
	error_clear(&err);
	return buf_detach(&in, NULL);
}

/* Entry intname of mailboxes.db appended to c->ents (-p, -f); -1 if none. */
static long add_entry(struct ctx *c, const char *intname)
{
	struct mboxlist_entry *e = NULL;
	struct error err = ERROR_INIT;
	if (mboxlist_lookup(c->ml, intname, false, &e, NULL, &err) < 0) {
		error_clear(&err);
		return -1;
	}
	collect(c, e);
	mboxlist_entry_free(&e);
	c->visited = xrealloc(c->visited, c->nents * sizeof(*c->visited));
	c->visited[c->nents - 1] = false;
	return (long)c->nents - 1;
}

/*
 * An entry for intname from the cyrus.header (and cyrus.index) found by
 * name on partition part: its uniqueid, type and ACL, as 3.6.1 means -p
 * and -f without -x to do (the real one writes an entry without uniqueid
 * and crashes on it).
 */
static int import_header(struct ctx *c, const char *intname,
			 const char *part, struct error *err)
{
	struct buf hp = BUF_INIT, ip = BUF_INIT;
	struct mailbox_header h;
	struct mailbox_index idx;
	struct mboxlist_entry *e = NULL;
	struct cyrusdb_txn *tid = NULL;
	int r = -1;

	mailbox_header_init(&h);
	memset(&idx, 0, sizeof(idx));
	if (!part || mboxpath_meta(c->cfg, &c->ml->ns, part, intname, NULL,
				   MBOXPATH_HEADER, false, &hp, err) < 0 ||
	    mboxpath_meta(c->cfg, &c->ml->ns, part, intname, NULL,
			  MBOXPATH_INDEX, false, &ip, err) < 0 ||
	    mailbox_header_read(hp.s, &h, NULL, NULL, err) < 0)
		goto out;
	if (!h.uniqueid || (h.name && strcmp(h.name, intname))) {
		error_set(err, ERR_DATA, "%s: not the header of %s", hp.s,
			  intname);
		goto out;
	}
	e = mboxlist_entry_new();
	e->name = xstrdup(intname);
	e->mbtype = MBTYPE_KIND(h.mbtype) | MBTYPE_LEGACY_DIRS;
	e->partition = xstrdup(part);
	e->acl = xstrdup(h.acl ? h.acl : "");
	e->uniqueid = xstrdup(h.uniqueid);
	e->mtime = time(NULL);
	if (mailbox_index_read(ip.s, &idx, NULL, err) == 0) {
		e->uidvalidity = idx.h.uidvalidity;
		e->createdmodseq = idx.h.createdmodseq;
		e->foldermodseq = idx.h.highestmodseq;
	}
	error_clear(err);
	if (mboxlist_update(c->ml, e, e->mtime, &tid, err) < 0 ||
	    cyrusdb_commit(c->ml->db, tid) < 0) {
		if (tid)
			cyrusdb_abort(c->ml->db, tid);
		if (err->kind == ERR_NONE)
			error_set(err, ERR_IO, "cannot write mailboxes.db");
		goto out;
	}
	r = 0;
out:
	mboxlist_entry_free(&e);
	mailbox_index_release(&idx);
	mailbox_header_release(&h);
	buf_release(&hp);
	buf_release(&ip);
	return r;
}

/*
 * Creates intname, missing from mailboxes.db: from its old cyrus.header
 * unless -x, else anew as imapd's CREATE (mailbox_create over whatever
 * directory is there, as the real -x does). part NULL: the parent's.
 */
static int create_missing(struct ctx *c, const char *intname,
			  const char *part, struct error *err)
{
	if (!c->o.xflag && c->o.changes &&
	    import_header(c, intname, part, err) == 0)
		return 0;
	error_clear(err);
	if (!c->o.changes)
		return 0;
	struct mboxops ops;
	struct mboxops_create co;
	memset(&ops, 0, sizeof(ops));
	memset(&co, 0, sizeof(co));
	ops.cfg = c->cfg;
	ops.ml = c->ml;
	co.partition = part;
	for (int i = 0; i < MBOXOPS_QUOTA_NUM; i++)
		co.limits[i] = -1;
	int r = mboxops_create(&ops, intname, &co, NULL, err);
	mboxops_release(&ops);
	return r;
}

/* -f: subdirectories of e's directory with a cyrus.header, not in
 * mailboxes.db, queued (and printed) for creation. */
static void discover(struct ctx *c, const struct mboxlist_entry *e)
{
	struct error err = ERROR_INIT;
	char *hpath = NULL;
	if (mailbox_paths(c->cfg, &c->ml->ns, e, &hpath, NULL, NULL, NULL,
			  NULL, &err) < 0) {
		error_clear(&err);
		return;
	}
	char *slash = strrchr(hpath, '/');
	if (slash)
		*slash = '\0';
	DIR *d = opendir(hpath);
	struct dirent *de;
	while (d && (de = readdir(d)) != NULL) {
		struct stat st;
		if (strchr(de->d_name, '.'))
			continue;
		char *sub = xasprintf("%s/%s", hpath, de->d_name);
		char *hdr = xasprintf("%s/cyrus.header", sub);
		bool ok = stat(sub, &st) == 0 && S_ISDIR(st.st_mode) &&
			  stat(hdr, &st) == 0;
		free(sub);
		free(hdr);
		if (!ok)
			continue;
		char *name = xasprintf("%s.%s", e->name, de->d_name);
		struct mboxlist_entry *x = NULL;
		if (mboxlist_lookup(c->ml, name, false, &x, NULL, &err) == 0) {
			mboxlist_entry_free(&x);
			free(name);
			continue;
		}
		error_clear(&err);
		printf("discovered %s\n", name);
		c->found = xrealloc(c->found,
				    (c->nfound + 1) * sizeof(*c->found));
		c->found[c->nfound] = name;
		c->foundpart = xrealloc(c->foundpart, (c->nfound + 1) *
					sizeof(*c->foundpart));
		c->foundpart[c->nfound++] = e->partition ?
						    xstrdup(e->partition) :
						    NULL;
	}
	if (d)
		closedir(d);
	free(hpath);
	fflush(stdout);
}

/* -f: the discovered mailboxes, created and reconstructed in turn (each
 * may discover more). */
static void run_discovered(struct ctx *c)
{
	for (size_t k = 0; k < c->nfound; k++) {
		struct error err = ERROR_INIT;
		char *name = c->found[k];
		if (c->stop) {
			/* a uniqueid clash without -I ended the run */
		} else if (create_missing(c, name, c->foundpart[k], &err) < 0) {
			fprintf(stderr, "createmailbox %s: %s\n", name,
				err.msg);
			error_clear(&err);
		} else {
			long i = add_entry(c, name);
			if (i >= 0 && !c->visited[i]) {
				c->visited[i] = true;
				if (reconstruct_one(c, c->ents[i]) == 0)
					discover(c, c->ents[i]);
			}
		}
		free(name);
		free(c->foundpart[k]);
	}
	free(c->found);
	free(c->foundpart);
	c->found = NULL;
	c->foundpart = NULL;
	c->nfound = 0;
}

struct part_find {
	const char *path;
	const struct config *cfg;
	char *part;
};

static int part_match(void *rock, const char *name, const char *dir)
{
	struct part_find *pf = rock;
	const char *meta = config_metapartitiondir(pf->cfg, name);
	const char *roots[2] = { dir, meta };
	for (int i = 0; i < 2; i++) {
		size_t n = roots[i] ? strlen(roots[i]) : 0;
		if (n && !strncmp(pf->path, roots[i], n) &&
		    pf->path[n] == '/') {
			pf->part = xstrdup(name);
			return 1;
		}
	}
	return 0;
}

/* -P: a mailboxes.db entry from the cyrus.header at arg. */
static void reconstruct_path(struct ctx *c, const char *arg)
{
	char real[PATH_MAX + 1], real2[PATH_MAX + 1];
	const char *sfx = "/cyrus.header";
	size_t n = strlen(arg), sn = strlen(sfx);
	struct mailbox_header h;
	struct mailbox_index idx;
	struct error err = ERROR_INIT;
	struct buf mp = BUF_INIT;
	struct part_find pf = { NULL, c->cfg, NULL };
	struct mboxlist_entry *e = NULL;
	struct cyrusdb_txn *tid = NULL;
	char *hpath;

	mailbox_header_init(&h);
	memset(&idx, 0, sizeof(idx));
	if (!realpath(arg, real)) {
		printf("Can not resolve path '%s'\n", arg);
		return;
	}
	hpath = xasprintf("%s%s", real,
			  n < sn || strcmp(arg + n - sn, sfx) ? sfx : "");
	if (mailbox_header_read(hpath, &h, NULL, NULL, &err) < 0 ||
	    !h.name || !h.uniqueid) {
		/* a header without name or uniqueid: not handled here */
		printf("Invalid/missing cyrus.header at '%s'\n", hpath);
		goto out;
	}
	pf.path = hpath;
	config_foreach_partition(c->cfg, part_match, &pf);
	if (!pf.part) {
		printf("Header for mailbox '%s' is not located on a valid "
		       "[meta]partition\n", h.name);
		goto out;
	}
	bool legacy = (h.mbtype & MBTYPE_LEGACY_DIRS) != 0;
	if (mboxpath_meta(c->cfg, &c->ml->ns, pf.part, h.name,
			  legacy ? NULL : h.uniqueid, MBOXPATH_HEADER, false,
			  &mp, &err) < 0 || !realpath(mp.s, real2) ||
	    strcmp(hpath, real2)) {
		printf("Header for mailbox '%s' (%s) is not located in proper "
		       "location: '%s'\n", h.name, h.uniqueid,
		       mp.s ? mp.s : "");
		goto out;
	}
	e = mboxlist_entry_new();
	e->name = xstrdup(h.name);
	e->mbtype = h.mbtype;
	e->partition = xstrdup(pf.part);
	e->acl = h.acl ? xstrdup(h.acl) : NULL;
	e->uniqueid = xstrdup(h.uniqueid);
	e->mtime = time(NULL);
	char *ipath = NULL;
	if (mailbox_paths(c->cfg, &c->ml->ns, e, NULL, &ipath, NULL, NULL,
			  NULL, &err) < 0 ||
	    mailbox_index_read(ipath, &idx, NULL, &err) < 0) {
		printf("failed to open mailbox %s (%s): %s\n", e->name,
		       e->uniqueid, err.msg);
		free(ipath);
		goto out;
	}
	free(ipath);
	e->uidvalidity = idx.h.uidvalidity;
	e->foldermodseq = idx.h.highestmodseq;
	e->createdmodseq = idx.h.createdmodseq;
	if (!c->o.changes) {
		printf("created mbentry for %s (%s)\n", e->name, e->uniqueid);
		goto out;
	}
	if (mboxlist_update(c->ml, e, e->mtime, &tid, &err) < 0 ||
	    cyrusdb_commit(c->ml->db, tid) < 0) {
		if (tid)
			cyrusdb_abort(c->ml->db, tid);
		printf("failed to create mbentry for %s (%s): %s\n", e->name,
		       e->uniqueid, err.msg);
	} else {
		printf("created mbentry for %s (%s)\n", e->name, e->uniqueid);
	}
out:
	mboxlist_entry_free(&e);
	mailbox_index_release(&idx);
	mailbox_header_release(&h);
	buf_release(&mp);
	free(pf.part);
	free(hpath);
	error_clear(&err);
}

static const struct option longopts[] = {
	{ "help", no_argument, NULL, 'h' },
	{ "jobs", required_argument, NULL, 'j' },
	{ NULL, 0, NULL, 0 },
};

int cmd_reconstruct(int argc, char **argv, struct cyrus_ctx *ctx)
{
	struct ctx c;
	const char *alt_config = NULL;
	bool mflag = false;
	int opt;

	memset(&c, 0, sizeof(c));
	c.o.changes = true;
	c.o.do_stat = true;
	c.prog = ctx->progname;
	while ((opt = getopt_long(argc, argv, "C:kp:rmfsxdgGqRUMIoOnV:uPj:",
				  longopts, NULL)) != -1) {
		switch (opt) {
		case 'C': alt_config = optarg; break;
		case 'p': c.o.part = optarg; break;
		case 'r': c.o.recurse = true; break;
		case 'u': c.o.users = true; break;
		case 'P': c.o.paths = true; break;
		case 'm': mflag = true; break;
		case 'n': c.o.changes = false; break;
		case 'g':
			fprintf(stderr,
				"reconstruct: deprecated option -g ignored\n");
			break;
		case 'k':
			fprintf(stderr,
				"reconstruct: deprecated option -k ignored\n");
			break;
		case 'G': c.o.parse = true; break;
		case 'f': c.o.fflag = true; break;
		case 'x': c.o.xflag = true; break;
		case 's': c.o.do_stat = false; break;
		case 'q': c.o.quiet = true; break;
		case 'R': c.o.guid_rewrite = true; break;
		case 'U': c.o.guid_unlink = true; break;
		case 'o': c.o.ignore_odd = true; break;
		case 'O': c.o.remove_odd = true; break;
		case 'M': c.o.prefer_mboxlist = true; break;
		case 'I': c.o.update_uniqueids = true; break;
		case 'V':
			if (!strcasecmp(optarg, "max"))
				c.o.setversion = MAILBOX_MINOR_VERSION;
			else
				c.o.setversion = atoi(optarg);
			break;
		case 'j': {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*end || v < 1 || v > 1024)
				cyrus_usage(ctx, false);
			c.jobs = (unsigned)v;
			break;
		}
		case 'h': cyrus_usage(ctx, true);
		default: cyrus_usage(ctx, false);
		}
	}
	argc -= optind;
	argv += optind;

	if (mflag) {
		if (c.o.recurse || c.o.fflag || argc)
			cyrus_usage(ctx, false);
		fprintf(stderr, "reconstructing mailboxes.db currently not "
				"supported\n");
		return EX_USAGE;
	}
	if (c.o.users && c.o.paths)
		cyrus_usage(ctx, false);
	if (c.o.setversion && (c.o.setversion < 10 ||
			       c.o.setversion > MAILBOX_MINOR_VERSION)) {
		fprintf(stderr, "reconstruct: cannot convert to version %d\n",
			c.o.setversion);
		return EX_USAGE;
	}
	if (c.o.part) {
		if (!argc) {
			fprintf(stderr, "When using -p, you must specify a "
					"mailbox to attempt to reconstruct.");
			return EX_USAGE;
		}
		for (int i = 0; i < argc; i++)
			if (strchr(argv[i], '%') || strchr(argv[i], '*')) {
				fprintf(stderr, "Using wildcards with -p is not "
						"supported.\n");
				return EX_USAGE;
			}
	}
	if ((c.o.recurse || c.o.users) && !argc) {
		fprintf(stderr, "please specify a mailbox to recurse from\n");
		return EX_USAGE;
	}

	cyrus_setup(ctx, alt_config);
	c.cfg = ctx->cfg;
	struct error err = ERROR_INIT;
	if (mboxlist_open(ctx->cfg, NULL, 0, &c.ml, &err) < 0) {
		fprintf(stderr, "%s: cannot open mailboxes.db: %s\n",
			ctx->progname, err.msg);
		error_clear(&err);
		return EX_TEMPFAIL;
	}
	if (mboxlist_foreach(c.ml, 0, collect, &c, NULL, &err) < 0) {
		fprintf(stderr, "%s: cannot read mailboxes.db: %s\n",
			ctx->progname, err.msg);
		error_clear(&err);
		mboxlist_close(&c.ml);
		return EX_TEMPFAIL;
	}
	c.visited = xcalloc(c.nents ? c.nents : 1, sizeof(*c.visited));
	c.want_progress = !c.o.quiet;

	if (c.o.part) {
		for (int i = 0; i < argc; i++) {
			char *in = to_intname(&c, argv[i], false);
			bool exists = false;
			for (size_t k = 0; k < c.nents; k++)
				if (!strcmp(c.ents[k]->name, in))
					exists = true;
			free(in);
			if (exists) {
				fprintf(stderr, "Mailbox %s already "
					"exists.  Cannot specify -p.\n",
					argv[i]);
				c.rc = EX_USAGE;
				goto done;
			}
		}
		for (int i = 0; i < argc; i++) {
			char *in = to_intname(&c, argv[i], false);
			if (create_missing(&c, in, c.o.part, &err) < 0) {
				fprintf(stderr, "could not create %s\n",
					argv[i]);
				error_clear(&err);
			} else {
				add_entry(&c, in);
			}
			free(in);
		}
	}
	if (c.o.paths) {
		for (int i = 0; i < argc; i++)
			reconstruct_path(&c, argv[i]);
		goto done;
	}
	if (!argc)
		run_pattern(&c, "*");
	for (int i = 0; i < argc; i++) {
		if (c.o.users) {
			char *user = to_intname(&c, argv[i], true);
			run_match(&c, NULL, user);
			free(user);
			continue;
		}
		run_pattern(&c, argv[i]);
		if (c.o.recurse) {
			/* "NAME" SEP "*", then the "@domain" of NAME. */
			const char *at = c.ml->ns.virtdomains ?
						 strchr(argv[i], '@') : NULL;
			size_t n = at ? (size_t)(at - argv[i]) : strlen(argv[i]);
			char *sub = xasprintf("%.*s%c*%s", (int)n, argv[i],
					      c.ml->ns.hier_sep, at ? at : "");
			run_pattern(&c, sub);
			free(sub);
		}
	}
	if (!c.jobs)
		c.jobs = jobs_ncpus();
	if (c.o.fflag)
		c.jobs = 1;
	if (c.want_progress)
		progress_begin(&c.bar, c.nwork, "mailboxes");
	run_work(&c);
	run_discovered(&c);
done:
	progress_end(&c.bar);
	for (size_t i = 0; i < c.nents; i++) {
		mboxlist_entry_free(&c.ents[i]);
		free(c.extnames[i]);
	}
	free(c.ents);
	free(c.extnames);
	free(c.visited);
	free(c.work);
	free(c.groups);
	mboxlist_close(&c.ml);
	return c.rc;
}
