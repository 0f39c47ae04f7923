#include "compat.h"

#include "fixentries.h"

#include <time.h>

#include "buf.h"
#include "config.h"
#include "cyrusdb.h"
#include "error.h"
#include "log.h"
#include "mailbox.h"
#include "mboxlist.h"
#include "mboxname.h"
#include "mboxpath.h"
#include "xmalloc.h"

#define RS '\x1e'

struct names {
	char **v;
	size_t n, alloc;
};

static void names_add(struct names *l, const char *s)
{
	if (l->n == l->alloc) {
		l->alloc = l->alloc ? 2 * l->alloc : 64;
		l->v = xrealloc(l->v, l->alloc * sizeof(*l->v));
	}
	l->v[l->n++] = xstrdup(s);
}

static void names_release(struct names *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

struct scan {
	const struct config *cfg;
	struct names live;     /* neither tombstone nor intermediate */
	struct names reserved;
	struct names reserved_uid; /* their uniqueids, "" for none */
	struct names noid;     /* local entries without a uniqueid */
};

/* mbentry_is_local_mailbox: not remote, and on this server. */
static bool is_local(const struct config *cfg, const struct mboxlist_entry *e)
{
	if (e->mbtype & MBTYPE_REMOTE)
		return false;
	const char *me = config_getstring(cfg, "servername");
	return !e->server || (me && !strcmp(e->server, me));
}

static int scan_cb(void *rock, const struct mboxlist_entry *e)
{
	struct scan *sc = rock;
	if (!(e->mbtype & (MBTYPE_DELETED | MBTYPE_INTERMEDIATE)))
		names_add(&sc->live, e->name);
	if (e->mbtype & MBTYPE_DELETED)
		return 0; /* Cyrus's walk leaves tombstones out */
	if (e->mbtype & MBTYPE_RESERVE) {
		names_add(&sc->reserved, e->name);
		names_add(&sc->reserved_uid, e->uniqueid ? e->uniqueid : "");
	}
	else if (!e->uniqueid && is_local(sc->cfg, e))
		names_add(&sc->noid, e->name);
	return 0;
}

static bool has_children(const struct names *live, const char *name)
{
	size_t len = strlen(name);
	for (size_t i = 0; i < live->n; i++)
		if (!strncmp(live->v[i], name, len) && live->v[i][len] == '.')
			return true;
	return false;
}

/* A reserved entry: Cyrus deletes it with force; with no mailbox behind
 * it that leaves a bare tombstone (or an intermediate). */
static int fix_reserved(struct mboxlist *ml, const struct names *live,
			const char *name, struct error *err)
{
	int r;
	if (mboxname_isdeleted(&ml->ns, name, NULL)) {
		r = mboxlist_delete(ml, name, NULL, err);
	} else {
		struct mboxlist_entry *e = mboxlist_entry_new();
		e->name = xstrdup(name);
		e->mbtype = has_children(live, name) ? MBTYPE_INTERMEDIATE
						     : MBTYPE_DELETED;
		r = mboxlist_update(ml, e, time(NULL), NULL, err);
		mboxlist_entry_free(&e);
	}
	if (r < 0)
		log_error("could not remove reserved mailbox '%s': %s", name,
			  err->msg);
	else
		log_notice("removed reserved mailbox '%s'", name);
	return r;
}

static int fix_uniqueid(struct mboxlist *ml, const char *name,
			struct error *err)
{
	struct mboxlist_entry *e = NULL;
	struct mailbox_header h;
	struct buf path = BUF_INIT;
	struct error herr = ERROR_INIT;
	int r = 0;

	mailbox_header_init(&h);
	if (mboxlist_lookup(ml, name, true, &e, NULL, err) < 0)
		return -1;
	if (mboxpath_meta(ml->cfg, &ml->ns, e->partition, e->name, NULL,
			  MBOXPATH_HEADER, false, &path, &herr) < 0 ||
	    mailbox_header_read(path.s, &h, NULL, NULL, &herr) < 0) {
		/* Cyrus skips a mailbox it cannot open. */
		log_debug("%s: cannot read its header: %s", name, herr.msg);
		goto out;
	}
	if (!h.uniqueid) {
		log_warn("%s: neither mailboxes.db nor cyrus.header has a "
			 "uniqueid; left without one (Cyrus would make one "
			 "up: run reconstruct)", name);
		goto out;
	}
	e->uniqueid = xstrdup(h.uniqueid);
	r = mboxlist_update(ml, e, time(NULL), NULL, err);
	if (r < 0)
		log_error("failed to update mboxlist for '%s': %s", name,
			  err->msg);
	else
		log_info("mbentry had no uniqueid, setting from header: "
			 "mboxname=<%s> newuniqueid=<%s>", name, e->uniqueid);
out:
	mailbox_header_release(&h);
	mboxlist_entry_free(&e);
	buf_release(&path);
	return r;
}

/* ---- reverse ACLs (mboxlist_set_racls) ---- */

/* Keys are collected first and written afterwards: no writes while the
 * same database is being walked. */
struct racl {
	struct mboxlist *ml;
	char **admins;
	size_t nadmins;
	struct names keys;
	struct buf key;
	int r;
};

static bool is_admin(const struct racl *ra, const char *user, size_t len)
{
	for (size_t i = 0; i < ra->nadmins; i++)
		if (strlen(ra->admins[i]) == len &&
		    !memcmp(ra->admins[i], user, len))
			return true;
	return false;
}

static int racl_add_cb(void *rock, const struct mboxlist_entry *e)
{
	struct racl *ra = rock;
	struct mboxname mbn;
	struct buf owner = BUF_INIT;
	bool isuser;

	if (e->mbtype & (MBTYPE_DELETED | MBTYPE_INTERMEDIATE) || !e->acl)
		return 0;
	char *dbname = mboxname_intname_to_dbname(&ra->ml->ns, e->name);
	mboxname_init(&mbn);
	mboxname_from_dbname(&ra->ml->ns, &mbn, dbname, strlen(dbname));
	isuser = mboxname_userid(&mbn, &owner);
	mboxname_release(&mbn);

	/* The ACL is "id TAB rights TAB ..." */
	const char *p = e->acl;
	while (*p) {
		const char *id = p, *tab = strchr(p, '\t');
		if (!tab)
			break;
		const char *rights = tab + 1, *end = strchr(rights, '\t');
		size_t idlen = (size_t)(tab - id);
		size_t rlen = end ? (size_t)(end - rights) : strlen(rights);
		p = end ? end + 1 : rights + rlen;
		if (!memchr(rights, 'l', rlen) && !memchr(rights, 'r', rlen))
			continue;
		if (isuser && owner.len == idlen && !memcmp(owner.s, id, idlen))
			continue;
		if (is_admin(ra, id, idlen))
			continue;
		buf_reset(&ra->key);
		buf_addch(&ra->key, 'A');
		buf_addch(&ra->key, isuser ? 'U' : 'S');
		buf_addch(&ra->key, RS);
		buf_add(&ra->key, id, idlen);
		buf_addch(&ra->key, RS);
		buf_adds(&ra->key, dbname);
		names_add(&ra->keys, ra->key.s);
	}
	free(dbname);
	buf_release(&owner);
	return ra->r;
}

static int racl_del_cb(void *rock, const char *key, size_t keylen,
		       const char *data UNUSED, size_t datalen UNUSED)
{
	struct racl *ra = rock;
	char *k = xstrndup(key, keylen);
	names_add(&ra->keys, k);
	free(k);
	return 0;
}

static void split_admins(struct racl *ra, const char *s)
{
	size_t alloc = 0;
	while (s && *s) {
		while (*s == ' ' || *s == '\t' || *s == ',')
			s++;
		size_t n = strcspn(s, " \t,");
		if (!n)
			break;
		if (ra->nadmins == alloc) {
			alloc = alloc ? 2 * alloc : 8;
			ra->admins = xrealloc(ra->admins,
					      alloc * sizeof(*ra->admins));
		}
		ra->admins[ra->nadmins++] = xstrndup(s, n);
		s += n;
	}
}

static int set_racls(struct mboxlist *ml, bool enabled, struct error *err)
{
	static const char marker[3] = { 'A', 'S', RS };
	struct racl ra = { .ml = ml, .key = BUF_INIT };
	struct cyrusdb_txn *tid = NULL;
	const char *data;
	size_t datalen;
	int r = cyrusdb_fetch(ml->db, marker, 3, &data, &datalen, NULL);
	bool have = r == CYRUSDB_OK;

	if (r && r != CYRUSDB_NOTFOUND)
		return error_set(err, ERR_IO, "cannot read mailboxes.db: %s",
				 cyrusdb_errmsg(ml->db));
	r = 0;
	if (have && !enabled) {
		log_notice("removing reverse acl support");
		r = cyrusdb_foreach(ml->db, marker, 3, NULL, racl_del_cb, &ra,
				    NULL);
		for (size_t i = 0; !r && i < ra.keys.n; i++)
			r = cyrusdb_delete(ml->db, ra.keys.v[i],
					   strlen(ra.keys.v[i]), &tid, false);
	} else if (enabled && !have) {
		log_notice("adding reverse acl support");
		split_admins(&ra, config_getstring(ml->cfg, "admins"));
		struct error ferr = ERROR_INIT;
		if (mboxlist_foreach(ml, MBOXLIST_TOMBSTONES |
				     MBOXLIST_INTERMEDIATES, racl_add_cb, &ra,
				     NULL, &ferr) < 0)
			r = CYRUSDB_IOERROR;
		for (size_t i = 0; !r && i < ra.keys.n; i++)
			r = cyrusdb_store(ml->db, ra.keys.v[i],
					  strlen(ra.keys.v[i]), "", 0, &tid);
		if (!r)
			r = cyrusdb_store(ml->db, marker, 3, "", 0, &tid);
	}
	if (tid) {
		if (r)
			cyrusdb_abort(ml->db, tid);
		else
			r = cyrusdb_commit(ml->db, tid);
	}
	for (size_t i = 0; i < ra.nadmins; i++)
		free(ra.admins[i]);
	free(ra.admins);
	names_release(&ra.keys);
	buf_release(&ra.key);
	if (r)
		return error_set(err, ERR_IO, "cannot %s reverse ACLs in "
				 "mailboxes.db: %s", enabled ? "add" : "remove",
				 cyrusdb_errmsg(ml->db));
	return 0;
}

int fixentries_run(const struct config *cfg, const char *path,
		   struct error *err)
{
	struct mboxlist *ml = NULL;
	struct scan sc = { .cfg = cfg };
	int r = -1;

	if (mboxlist_open(cfg, path, 0, &ml, err) < 0)
		return -1;
	if (mboxlist_foreach(ml, MBOXLIST_TOMBSTONES | MBOXLIST_INTERMEDIATES,
			     scan_cb, &sc, NULL, err) < 0)
		goto out;
	for (size_t i = 0; i < sc.reserved.n; i++) {
		/* Cyrus 3.6.1 leaves a reserved entry whose uniqueid has an I
		 * record as it is (observed: its forced delete fails). */
		struct mboxlist_entry *ie = NULL;
		struct error lerr = ERROR_INIT;
		if (sc.reserved_uid.v[i][0] &&
		    mboxlist_lookup_by_uniqueid(ml, sc.reserved_uid.v[i], &ie,
						NULL, &lerr) == 0) {
			mboxlist_entry_free(&ie);
			log_warn("reserved mailbox '%s' has a uniqueid record: "
				 "left as it is, as Cyrus 3.6.1 does",
				 sc.reserved.v[i]);
			continue;
		}
		if (fix_reserved(ml, &sc.live, sc.reserved.v[i], err) < 0)
			goto out;
	}
	for (size_t i = 0; i < sc.noid.n; i++)
		if (fix_uniqueid(ml, sc.noid.v[i], err) < 0)
			goto out;
	r = set_racls(ml, config_getswitch(cfg, "reverseacls"), err);
out:
	names_release(&sc.live);
	names_release(&sc.reserved);
	names_release(&sc.reserved_uid);
	names_release(&sc.noid);
	mboxlist_close(&ml);
	return r;
}
