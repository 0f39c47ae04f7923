#include "compat.h"
#include "mboxpath.h"

#include <ctype.h>

#include "buf.h"
#include "config.h"
#include "error.h"
#include "mboxname.h"
#include "xmalloc.h"

char mboxpath_hashchar(const char *name, bool full)
{
	if (full) {
		uint32_t n = 0;
		for (const unsigned char *p = (const unsigned char *)name;
		     *p && *p != '.'; p++)
			n = ((n << 3) ^ (n >> 5)) ^ *p;
		return (char)('A' + n % 23);
	}
	int c = tolower((unsigned char)*name);
	return c >= 'a' && c <= 'z' ? (char)c : 'q';
}

void mboxpath_hash(const struct config *cfg, const struct mboxname_ns *ns,
		   const char *root, const char *intname, struct buf *out)
{
	bool hash = config_getswitch(cfg, "hashimapspool");
	bool full = config_getswitch(cfg, "fulldirhash");
	struct mboxname mbn;
	mboxname_from_intname(ns, &mbn, intname);

	buf_adds(out, root);
	if (mbn.domain) {
		buf_adds(out, "/domain/");
		if (hash)
			buf_printf(out, "%c/", mboxpath_hashchar(mbn.domain,
								 full));
		buf_adds(out, mbn.domain);
	}

	/* The components on disk: [DELETED] [user localpart] boxes [HEX]. */
	size_t n = 0, max = mbn.nboxes + 4;
	const char **comp = xcalloc(max, sizeof(*comp));
	char hex[32];
	if (mbn.isdeleted)
		comp[n++] = ns->deletedprefix;
	if (mbn.localpart) {
		comp[n++] = "user";
		comp[n++] = mbn.localpart;
	}
	for (size_t i = 0; i < mbn.nboxes; i++)
		comp[n++] = mbn.boxes[i];
	if (mbn.isdeleted) {
		snprintf(hex, sizeof(hex), "%X", (unsigned)mbn.isdeleted);
		comp[n++] = hex;
	}
	/* The letter comes from the second component if there is one. */
	if (hash && n)
		buf_printf(out, "/%c",
			   mboxpath_hashchar(n > 1 ? comp[1] : comp[0], full));
	for (size_t i = 0; i < n; i++) {
		buf_addch(out, '/');
		for (const char *p = comp[i]; *p; p++)
			buf_addch(out, *p == '.' ? '^' : *p);
	}
	free(comp);
	mboxname_release(&mbn);
}

void mboxpath_id_hash(const char *root, const char *uniqueid, struct buf *out)
{
	/* Cyrus indexes [0] and [1]; a short id must not read past it. */
	char c0 = uniqueid[0], c1 = c0 ? uniqueid[1] : '\0';
	if (root)
		buf_printf(out, "%s/", root);
	buf_adds(out, "uuid/");
	if (c0)
		buf_addch(out, c0);
	buf_addch(out, '/');
	if (c1)
		buf_addch(out, c1);
	buf_printf(out, "/%s", uniqueid);
}

static int mailbox_dir(const struct config *cfg,
		       const struct mboxname_ns *ns, const char *root,
		       const char *intname, const char *uniqueid,
		       struct buf *out)
{
	if (uniqueid)
		mboxpath_id_hash(root, uniqueid, out);
	else
		mboxpath_hash(cfg, ns, root, intname, out);
	return 0;
}

static int check_len(const struct buf *out, size_t start, struct error *err)
{
	if (out->len - start >= MBOXPATH_MAX)
		return error_set(err, ERR_DATA, "path longer than %d bytes",
				 MBOXPATH_MAX);
	return 0;
}

static int no_partition(const char *partition, struct error *err)
{
	return error_set(err, ERR_CONFIG,
			 "partition '%s' is not configured (no partition-%s "
			 "in imapd.conf)",
			 partition ? partition : "(none)",
			 partition ? partition : "NAME");
}

int mboxpath_data(const struct config *cfg, const struct mboxname_ns *ns,
		  const char *partition, const char *intname,
		  const char *uniqueid, unsigned long uid, struct buf *out,
		  struct error *err)
{
	const char *root = partition ? config_partitiondir(cfg, partition)
				     : NULL;
	size_t start = out->len;
	if (!root)
		return no_partition(partition, err);
	mailbox_dir(cfg, ns, root, intname, uniqueid, out);
	if (uid)
		buf_printf(out, "/%lu.", uid);
	return check_len(out, start, err);
}

int mboxpath_archive(const struct config *cfg, const struct mboxname_ns *ns,
		     const char *partition, const char *intname,
		     const char *uniqueid, unsigned long uid, struct buf *out,
		     struct error *err)
{
	const char *root = NULL;
	size_t start = out->len;
	if (partition) {
		root = config_archivepartitiondir(cfg, partition);
		if (!root)
			root = config_partitiondir(cfg, partition);
	}
	if (!root)
		return no_partition(partition, err);
	mailbox_dir(cfg, ns, root, intname, uniqueid, out);
	if (uid)
		buf_printf(out, "/%lu.", uid);
	return check_len(out, start, err);
}

static const struct {
	const char *type;     /* metadir-TYPE-PART, NULL: none */
	const char *bit;      /* metapartition_files word, NULL: always */
	const char *file;
} meta_files[] = {
	[MBOXPATH_DIR] = { NULL, NULL, NULL },
	[MBOXPATH_HEADER] = { "header", "header", "/cyrus.header" },
	[MBOXPATH_INDEX] = { "index", "index", "/cyrus.index" },
	[MBOXPATH_CACHE] = { "cache", "cache", "/cyrus.cache" },
	[MBOXPATH_EXPUNGE] = { NULL, "expunge", "/cyrus.expunge" },
	[MBOXPATH_SQUAT] = { "squat", "squat", "/cyrus.squat" },
	[MBOXPATH_ANNOTATIONS] = { "index", "annotations",
				   "/cyrus.annotations" },
	[MBOXPATH_DAV] = { "dav", "dav", "/cyrus.dav" },
	[MBOXPATH_ARCHIVECACHE] = { "archivecache", "archivecache",
				    "/cyrus.cache" },
};

/* Is word one of the space-separated words of list? */
static bool has_word(const char *list, const char *word)
{
	size_t n = strlen(word);
	while (list && *list) {
		list += strspn(list, " \t");
		size_t len = strcspn(list, " \t");
		if (len == n && !strncmp(list, word, n))
			return true;
		list += len;
	}
	return false;
}

int mboxpath_meta(const struct config *cfg, const struct mboxname_ns *ns,
		  const char *partition, const char *intname,
		  const char *uniqueid, enum mboxpath_meta meta, bool isnew,
		  struct buf *out, struct error *err)
{
	const char *root = NULL;
	size_t start = out->len;
	if (!partition)
		return no_partition(partition, err);
	if (meta_files[meta].type) {
		char key[300];
		snprintf(key, sizeof(key), "metadir-%s-%s",
			 meta_files[meta].type, partition);
		root = config_getraw(cfg, key);
	}
	if (!root && (!meta_files[meta].bit ||
		      has_word(config_getraw(cfg, "metapartition_files"),
			       meta_files[meta].bit)))
		root = config_metapartitiondir(cfg, partition);
	if (!root && meta == MBOXPATH_ARCHIVECACHE)
		root = config_archivepartitiondir(cfg, partition);
	if (!root)
		root = config_partitiondir(cfg, partition);
	if (!root)
		return no_partition(partition, err);
	if (!intname) {
		buf_adds(out, root);
		return check_len(out, start, err);
	}
	mailbox_dir(cfg, ns, root, intname, uniqueid, out);
	if (meta_files[meta].file) {
		buf_adds(out, meta_files[meta].file);
		if (isnew)
			buf_adds(out, ".NEW");
	}
	return check_len(out, start, err);
}

void mboxpath_lock(const struct config *cfg, const struct mboxname_ns *ns,
		   const char *intname, const char *uniqueid, struct buf *out)
{
	const char *root = config_getstring(cfg, "mboxname_lockpath");
	struct buf def = BUF_INIT;
	if (!root) {
		buf_printf(&def, "%s/lock",
			   config_getstring(cfg, "configdirectory"));
		root = def.s;
	}
	mboxpath_hash(cfg, ns, root, uniqueid ? uniqueid : intname, out);
	buf_adds(out, ".lock");
	buf_release(&def);
}

void mboxpath_user_byid(const struct config *cfg, const char *uniqueid,
			const char *suffix, struct buf *out)
{
	buf_printf(out, "%s/user/", config_getstring(cfg, "configdirectory"));
	mboxpath_id_hash(NULL, uniqueid, out);
	if (suffix)
		buf_printf(out, "/%s.db", suffix);
}

void mboxpath_user_legacy(const struct config *cfg,
			  const struct mboxname *mbn, const char *suffix,
			  struct buf *out)
{
	bool full = config_getswitch(cfg, "fulldirhash");
	buf_adds(out, config_getstring(cfg, "configdirectory"));
	/* The domain and user letters are there even without hashimapspool. */
	if (mbn->domain)
		buf_printf(out, "/domain/%c/%s",
			   mboxpath_hashchar(mbn->domain, full), mbn->domain);
	if (mbn->localpart) {
		buf_printf(out, "/user/%c",
			   mboxpath_hashchar(mbn->localpart, full));
		if (suffix)
			buf_printf(out, "/%s.%s", mbn->localpart, suffix);
	} else if (suffix) {
		buf_printf(out, "/shared.%s", suffix);
	}
}

void mboxpath_sieve_byid(const struct config *cfg, const char *uniqueid,
			 struct buf *out)
{
	mboxpath_id_hash(config_getstring(cfg, "sievedir"), uniqueid, out);
}

void mboxpath_sieve_legacy(const struct config *cfg,
			   const struct mboxname_ns *ns,
			   const struct mboxname *mbn, struct buf *out)
{
	bool full = config_getswitch(cfg, "fulldirhash");
	buf_adds(out, config_getstring(cfg, "sievedir"));
	if (ns->virtdomains && mbn->domain)
		buf_printf(out, "/domain/%c/%s",
			   mboxpath_hashchar(mbn->domain, full), mbn->domain);
	if (!mbn->localpart) {
		buf_adds(out, "/global");
		return;
	}
	struct buf uid = BUF_INIT;
	if (ns->virtdomains)
		buf_adds(&uid, mbn->localpart);
	else
		mboxname_userid(mbn, &uid);
	buf_printf(out, "/%c/%s", mboxpath_hashchar(uid.s, full), uid.s);
	buf_release(&uid);
}
