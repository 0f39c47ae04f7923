#include "compat.h"
#include "mboxlist.h"

#include <ctype.h>

#include "buf.h"
#include "config.h"
#include "cyrusdb.h"
#include "dlist.h"
#include "error.h"
#include "mboxpath.h"
#include "xmalloc.h"

struct mboxlist_entry *mboxlist_entry_new(void)
{
	return xzmalloc(sizeof(struct mboxlist_entry));
}

void mboxlist_entry_free(struct mboxlist_entry **ep)
{
	struct mboxlist_entry *e = *ep;
	if (!e)
		return;
	*ep = NULL;
	free(e->name);
	free(e->partition);
	free(e->server);
	free(e->acl);
	free(e->uniqueid);
	free(e->legacy_specialuse);
	for (size_t i = 0; i < e->nhistory; i++) {
		free(e->history[i].name);
		free(e->history[i].partition);
	}
	free(e->history);
	free(e);
}

static char *xstrdup_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

void mboxlist_entry_add_history(struct mboxlist_entry *e,
				const struct mboxlist_history *h)
{
	e->history = xrealloc(e->history,
			      (e->nhistory + 1) * sizeof(*e->history));
	struct mboxlist_history *n = &e->history[e->nhistory++];
	*n = *h;
	n->name = xstrdup_null(h->name);
	n->partition = xstrdup_null(h->partition);
}

static struct mboxlist_entry *entry_copy(const struct mboxlist_entry *src)
{
	struct mboxlist_entry *e = mboxlist_entry_new();
	*e = *src;
	e->name = xstrdup_null(src->name);
	e->partition = xstrdup_null(src->partition);
	e->server = xstrdup_null(src->server);
	e->acl = xstrdup_null(src->acl);
	e->uniqueid = xstrdup_null(src->uniqueid);
	e->legacy_specialuse = xstrdup_null(src->legacy_specialuse);
	e->history = NULL;
	e->nhistory = 0;
	for (size_t i = 0; i < src->nhistory; i++)
		mboxlist_entry_add_history(e, &src->history[i]);
	return e;
}

void mboxlist_mbtype_to_string(uint32_t mbtype, struct buf *out)
{
	static const char kinds[16] = {
		[MBTYPE_EMAIL] = 'e',	   [MBTYPE_NETNEWS] = 'n',
		[MBTYPE_JMAPSUBMIT] = 's', [MBTYPE_JMAPPUSHSUB] = 'p',
		[MBTYPE_SIEVE] = 'f',	   [MBTYPE_COLLECTION] = 'b',
		[MBTYPE_CALENDAR] = 'c',   [MBTYPE_ADDRESSBOOK] = 'a',
	};
	static const struct {
		uint32_t bit;
		char c;
	} flags[] = {
		{ MBTYPE_DELETED, 'd' },      { MBTYPE_MOVING, 'm' },
		{ MBTYPE_REMOTE, 'r' },	      { MBTYPE_RESERVE, 'z' },
		{ MBTYPE_INTERMEDIATE, 'i' }, { MBTYPE_LEGACY_DIRS, 'l' },
	};
	if (kinds[MBTYPE_KIND(mbtype)])
		buf_addch(out, kinds[MBTYPE_KIND(mbtype)]);
	for (size_t i = 0; i < ARRAY_SIZE(flags); i++)
		if (mbtype & flags[i].bit)
			buf_addch(out, flags[i].c);
}

int mboxlist_mbtype_from_string(const char *s, uint32_t *mbtype_r,
				struct error *err)
{
	uint32_t t = 0;
	*mbtype_r = 0;
	if (!s)
		return 0;
	/* The kind is the first letter; without one it is email. */
	switch (*s) {
	case 'a': t = MBTYPE_ADDRESSBOOK; s++; break;
	case 'b': t = MBTYPE_COLLECTION; s++; break;
	case 'c': t = MBTYPE_CALENDAR; s++; break;
	case 'e': t = MBTYPE_EMAIL; s++; break;
	case 'n': t = MBTYPE_NETNEWS; s++; break;
	case 'p': t = MBTYPE_JMAPPUSHSUB; s++; break;
	case 's': t = MBTYPE_JMAPSUBMIT; s++; break;
	}
	for (; *s; s++) {
		switch (*s) {
		case 'd': t |= MBTYPE_DELETED; break;
		case 'f': t |= MBTYPE_SIEVE; break;
		case 'i': t |= MBTYPE_INTERMEDIATE; break;
		case 'l': t |= MBTYPE_LEGACY_DIRS; break;
		case 'm': t |= MBTYPE_MOVING; break;
		case 'r': t |= MBTYPE_REMOTE; break;
		case 'z': t |= MBTYPE_RESERVE; break;
		default:
			return error_set(err, ERR_DATA,
					 "unknown mailbox type letter '%c'",
					 isprint((unsigned char)*s) ? *s : '?');
		}
	}
	*mbtype_r = t;
	return 0;
}

/* Cyrus's atoi/atol/strtoull on a field that may be NIL. */
static long long field_ll(const char *s)
{
	return s ? strtoll(s, NULL, 10) : 0;
}

static uint64_t field_u64(const char *s)
{
	return s ? strtoull(s, NULL, 10) : 0;
}

/* A scalar field: its string, or NULL for NIL; *ok false for lists. */
static const char *scalar(const struct dlist *dl, bool *ok)
{
	*ok = dl->type == DLIST_STRING || dl->type == DLIST_NIL;
	return dl->type == DLIST_STRING ? dl->val : NULL;
}

static void set_str(char **dst, const char *s)
{
	free(*dst);
	*dst = xstrdup_null(s);
}

static int decode_mbtype(const char *s, uint32_t *t, struct error *err)
{
	return mboxlist_mbtype_from_string(s, t, err);
}

static int decode_history(const struct mboxname_ns *ns,
			  const struct dlist *h, struct mboxlist_entry *e,
			  struct error *err)
{
	for (const struct dlist *item = h->head; item; item = item->next) {
		struct mboxlist_history hi = { 0 };
		if (item->type != DLIST_KVLIST)
			continue;
		for (const struct dlist *f = item->head; f; f = f->next) {
			bool ok;
			const char *v = scalar(f, &ok);
			if (!ok)
				continue;
			if (!strcmp(f->key, "N")) {
				free(hi.name);
				hi.name = mboxname_dbname_to_intname(
					ns, v ? v : "", v ? f->len : 0);
			} else if (!strcmp(f->key, "M")) {
				hi.mtime = (time_t)(int)field_ll(v);
			} else if (!strcmp(f->key, "V")) {
				hi.uidvalidity = (uint32_t)field_ll(v);
			} else if (!strcmp(f->key, "C")) {
				hi.createdmodseq = field_u64(v);
			} else if (!strcmp(f->key, "F")) {
				hi.foldermodseq = field_u64(v);
			} else if (!strcmp(f->key, "T")) {
				if (decode_mbtype(v, &hi.mbtype, err) < 0) {
					free(hi.name);
					free(hi.partition);
					return -1;
				}
			} else if (!strcmp(f->key, "P")) {
				set_str(&hi.partition, v);
			}
		}
		mboxlist_entry_add_history(e, &hi);
		free(hi.name);
		free(hi.partition);
	}
	return 0;
}

static int decode_dlist(const struct mboxname_ns *ns, const char *data,
			size_t datalen, struct mboxlist_entry *e,
			struct error *err)
{
	struct dlist *dl = NULL;
	struct buf acl = BUF_INIT;
	int r = dlist_parse(data, datalen, &dl, err);
	if (r < 0)
		return -1;
	if (dl->type != DLIST_KVLIST) {
		r = error_set(err, ERR_DATA, "not a kvlist");
		goto out;
	}
	for (const struct dlist *f = dl->head; f; f = f->next) {
		bool ok;
		const char *v = scalar(f, &ok);
		const char *k = f->key;
		if (!strcmp(k, "A") && f->type == DLIST_KVLIST) {
			for (const struct dlist *a = f->head; a; a = a->next) {
				const char *rights = scalar(a, &ok);
				if (!ok)
					continue;
				buf_printf(&acl, "%s\t%s\t", a->key,
					   rights ? rights : "");
			}
			continue;
		}
		if (!strcmp(k, "H") && f->type == DLIST_LIST) {
			if ((r = decode_history(ns, f, e, err)) < 0)
				goto out;
			continue;
		}
		if (!ok)
			continue;
		if (!strcmp(k, "C"))
			e->createdmodseq = field_u64(v);
		else if (!strcmp(k, "F"))
			e->foldermodseq = field_u64(v);
		else if (!strcmp(k, "I"))
			set_str(&e->uniqueid, v);
		else if (!strcmp(k, "M"))
			e->mtime = (time_t)(int)field_ll(v);
		else if (!strcmp(k, "N") && !e->name)
			e->name = mboxname_dbname_to_intname(
				ns, v ? v : "", v ? f->len : 0);
		else if (!strcmp(k, "P"))
			set_str(&e->partition, v);
		else if (!strcmp(k, "S"))
			set_str(&e->server, v);
		else if (!strcmp(k, "T")) {
			if ((r = decode_mbtype(v, &e->mbtype, err)) < 0)
				goto out;
		} else if (!strcmp(k, "V"))
			e->uidvalidity = (uint32_t)field_ll(v);
	}
	/* Cyrus always has an ACL string after a dlist, "" if none. */
	e->acl = xstrdup(acl.s);
out:
	dlist_free(&dl);
	buf_release(&acl);
	return r;
}

/* "[(uniqueid ID specialuse SU) ]MBTYPE [SERVER!]PARTITION ACL" */
static void decode_text(const char *data, size_t datalen,
			struct mboxlist_entry *e)
{
	char *copy = xstrndup(data, datalen), *p = copy, *q;
	if (*p == '(') {
		bool last = false;
		p++;
		while (!last) {
			char **target = NULL;
			q = p;
			while (*q && *q != ' ' && *q != ')')
				q++;
			if (*q != ' ')
				break;
			*q++ = '\0';
			if (!strcmp(p, "uniqueid"))
				target = &e->uniqueid;
			if (!strcmp(p, "specialuse"))
				target = &e->legacy_specialuse;
			p = q;
			while (*q && *q != ' ' && *q != ')')
				q++;
			if (*q != ' ')
				last = true;
			if (*q)
				*q++ = '\0';
			if (target)
				set_str(target, p);
			p = q;
		}
		if (*p == ' ')
			p++;
	}
	e->mbtype = (uint32_t)strtol(p, &p, 10);
	if (*p == ' ')
		p++;
	q = p;
	while (*q && *q != ' ' && *q != '!')
		q++;
	if (*q == '!') {
		*q++ = '\0';
		set_str(&e->server, p);
		p = q;
		while (*q && *q != ' ')
			q++;
	}
	if (*q)
		*q++ = '\0';
	set_str(&e->partition, p);
	set_str(&e->acl, q);
	free(copy);
}

int mboxlist_decode(const struct mboxname_ns *ns, const char *dbname,
		    size_t dbnamelen, const char *data, size_t datalen,
		    struct mboxlist_entry **e_r, struct error *err)
{
	struct mboxlist_entry *e = mboxlist_entry_new();
	*e_r = NULL;
	if (!datalen) {
		mboxlist_entry_free(&e);
		return error_set(err, ERR_DATA, "empty record");
	}
	if (dbname) {
		/* Cyrus copies the key into a MAX_MAILBOX_NAME buffer. */
		if (dbnamelen > MBOXNAME_MAX)
			dbnamelen = MBOXNAME_MAX;
		e->name = mboxname_dbname_to_intname(ns, dbname, dbnamelen);
	}
	if (*data == '%') {
		if (decode_dlist(ns, data, datalen, e, err) < 0) {
			mboxlist_entry_free(&e);
			return -1;
		}
	} else {
		decode_text(data, datalen, e);
	}
	*e_r = e;
	return 0;
}

void mboxlist_acl_to_dlist(const char *acl, struct buf *out)
{
	struct dlist *al = dlist_new_kvlist("A");
	const char *p = acl;
	while (p && *p) {
		const char *q = strchr(p, '\t');
		if (!q)
			break;
		char *name = xstrndup(p, (size_t)(q - p));
		q++;
		p = strchr(q, '\t');
		char *val = p ? xstrndup(q, (size_t)(p - q)) : xstrdup(q);
		if (p)
			p++;
		dlist_add_atom(al, name, val);
		free(name);
		free(val);
	}
	dlist_print(al, out);
	dlist_free(&al);
}

static void add_acl(struct dlist *dl, const char *acl)
{
	struct dlist *al = dlist_add_kvlist(dl, "A");
	const char *p = acl;
	while (p && *p) {
		const char *q = strchr(p, '\t');
		if (!q)
			break;
		char *name = xstrndup(p, (size_t)(q - p));
		q++;
		p = strchr(q, '\t');
		char *val = p ? xstrndup(q, (size_t)(p - q)) : xstrdup(q);
		if (p)
			p++;
		dlist_add_atom(al, name, val);
		free(name);
		free(val);
	}
}

static void add_mbtype(struct dlist *dl, uint32_t mbtype)
{
	struct buf t = BUF_INIT;
	mboxlist_mbtype_to_string(mbtype, &t);
	dlist_add_atom(dl, "T", t.s);
	buf_release(&t);
}

void mboxlist_encode(const struct mboxname_ns *ns,
		     const struct mboxlist_entry *e, bool for_ikey, time_t now,
		     struct buf *out)
{
	char *dbname = mboxname_intname_to_dbname(ns, e->name);
	struct dlist *dl = dlist_new_kvlist(NULL);
	add_mbtype(dl, e->mbtype);
	if (for_ikey)
		dlist_add_atom(dl, "N", dbname);
	else if (e->uniqueid)
		dlist_add_atom(dl, "I", e->uniqueid);
	if (e->partition)
		dlist_add_atom(dl, "P", e->partition);
	if (e->server)
		dlist_add_atom(dl, "S", e->server);
	if (e->uidvalidity)
		dlist_add_num(dl, "V", e->uidvalidity);
	if (e->createdmodseq)
		dlist_add_num(dl, "C", e->createdmodseq);
	if (e->foldermodseq)
		dlist_add_num(dl, "F", e->foldermodseq);
	dlist_add_num(dl, "M", (unsigned long long)now);
	if (e->acl)
		add_acl(dl, e->acl);
	if (for_ikey) {
		struct dlist *hl = dlist_add_list(dl, "H");
		for (size_t i = 0; i < e->nhistory; i++) {
			const struct mboxlist_history *h = &e->history[i];
			struct dlist *item = dlist_add_kvlist(hl, NULL);
			char *hdb = mboxname_intname_to_dbname(ns, h->name);
			dlist_add_atom(item, "N", hdb);
			free(hdb);
			if (h->mtime)
				dlist_add_num(item, "M",
					      (unsigned long long)h->mtime);
			if (h->uidvalidity)
				dlist_add_num(item, "V", h->uidvalidity);
			if (h->createdmodseq)
				dlist_add_num(item, "C", h->createdmodseq);
			if (h->foldermodseq)
				dlist_add_num(item, "F", h->foldermodseq);
			add_mbtype(item, h->mbtype);
			if (h->partition)
				dlist_add_atom(item, "P", h->partition);
		}
	}
	dlist_print(dl, out);
	dlist_free(&dl);
	free(dbname);
}

/* ---- the database ---- */

static int db_error(struct mboxlist *ml, int r, const char *what,
		    struct error *err)
{
	enum error_kind kind = r == CYRUSDB_AGAIN || r == CYRUSDB_LOCKED
				       ? ERR_TEMPFAIL
				       : ERR_IO;
	const char *msg = cyrusdb_errmsg(ml->db);
	return error_set(err, kind, "%s: %s", what,
			 msg && *msg ? msg : cyrusdb_strerror(r));
}

struct version_rock {
	const struct mboxname_ns *ns;
	int version; /* 0 unknown, 1, 2 */
};

/* The first decisive record tells the version, as Cyrus's check does. */
static int version_cb(void *rock, const char *key, size_t keylen,
		      const char *data, size_t datalen)
{
	struct version_rock *vr = rock;
	struct mboxlist_entry *e = NULL;
	struct error err = ERROR_INIT;
	if (!keylen)
		return 0;
	if (key[0] == '$') {
		if (keylen >= 6 && (!strncmp(key, "$RACL", 5) ||
				    !strncmp(key, "$RUNQ", 5))) {
			vr->version = 1;
			return CYRUSDB_DONE;
		}
		return 0;
	}
	if (key[0] == 'A' && keylen >= 3 && !memcmp(key, "AS\x1e", 3)) {
		vr->version = 2;
		return CYRUSDB_DONE;
	}
	if (key[0] == 'I' || key[0] == 'N') {
		if (mboxlist_decode(vr->ns, NULL, 0, data, datalen, &e, &err) <
		    0)
			return 0;
		vr->version = key[0] == 'I' && !e->name ? 1 : 2;
		mboxlist_entry_free(&e);
		return CYRUSDB_DONE;
	}
	return 0;
}

int mboxlist_open(const struct config *cfg, const char *fname, int flags,
		  struct mboxlist **ml_r, struct error *err)
{
	struct mboxlist *ml = xzmalloc(sizeof(*ml));
	char *path = fname ? xstrdup(fname) : config_db_path(cfg, "mboxlist");
	const char *backend = config_db_backend(cfg, "mboxlist");
	int r;

	*ml_r = NULL;
	ml->cfg = cfg;
	mboxname_ns_init(&ml->ns, cfg, true);
	r = cyrusdb_open(backend, path, flags, &ml->db, err);
	if (r < 0) {
		if (r == CYRUSDB_NOTFOUND)
			error_set(err, ERR_NOINPUT,
				  "cannot open mailboxes.db '%s': no such file",
				  path);
		goto fail;
	}
	struct version_rock vr = { &ml->ns, 0 };
	r = cyrusdb_foreach(ml->db, "", 0, NULL, version_cb, &vr, NULL);
	if (r < 0) {
		db_error(ml, r, "cannot read mailboxes.db", err);
		goto fail;
	}
	if (vr.version == 1) {
		error_set(err, ERR_DATA,
			  "'%s' is a version 1 (Cyrus 2.x-3.4) mailboxes.db; "
			  "let Cyrus 3.6 upgrade it first (start imapd or "
			  "run ctl_mboxlist -d once)",
			  path);
		goto fail;
	}
	free(path);
	*ml_r = ml;
	return 0;
fail:
	if (ml->db)
		cyrusdb_close(&ml->db);
	free(path);
	free(ml);
	return -1;
}

void mboxlist_close(struct mboxlist **mlp)
{
	struct mboxlist *ml = *mlp;
	if (!ml)
		return;
	*mlp = NULL;
	cyrusdb_close(&ml->db);
	free(ml);
}

struct foreach_rock {
	struct mboxlist *ml;
	unsigned flags;
	mboxlist_cb *cb;
	void *rock;
};

static int foreach_cb(void *rock, const char *key, size_t keylen,
		      const char *data, size_t datalen)
{
	struct foreach_rock *fr = rock;
	struct mboxlist_entry *e = NULL;
	if (!keylen || key[0] != 'N')
		return 0;
	/* Cyrus skips what it cannot parse. */
	if (mboxlist_decode(&fr->ml->ns, key + 1, keylen - 1, data, datalen,
			    &e, NULL) < 0)
		return 0;
	int r = 0;
	if ((e->mbtype & MBTYPE_DELETED) && !(fr->flags & MBOXLIST_TOMBSTONES))
		goto out;
	if ((e->mbtype & MBTYPE_INTERMEDIATE) &&
	    !(fr->flags & MBOXLIST_INTERMEDIATES))
		goto out;
	r = fr->cb(fr->rock, e);
out:
	mboxlist_entry_free(&e);
	return r;
}

int mboxlist_foreach(struct mboxlist *ml, unsigned flags, mboxlist_cb *cb,
		     void *rock, struct cyrusdb_txn **tid, struct error *err)
{
	struct foreach_rock fr = { ml, flags, cb, rock };
	int r = cyrusdb_foreach(ml->db, "N", 1, NULL, foreach_cb, &fr, tid);
	if (r < 0)
		return db_error(ml, r, "cannot read mailboxes.db", err);
	return r;
}

static int fetch_key(struct mboxlist *ml, const struct buf *key,
		     const char **data, size_t *len, struct cyrusdb_txn **tid,
		     struct error *err)
{
	int r = cyrusdb_fetch(ml->db, key->s, key->len, data, len, tid);
	if (r == CYRUSDB_NOTFOUND)
		return 1;
	if (r < 0)
		return db_error(ml, r, "cannot read mailboxes.db", err);
	return 0;
}

int mboxlist_lookup(struct mboxlist *ml, const char *intname, bool allow_all,
		    struct mboxlist_entry **e_r, struct cyrusdb_txn **tid,
		    struct error *err)
{
	struct buf key = BUF_INIT;
	const char *data;
	size_t len;
	char *dbname = mboxname_intname_to_dbname(&ml->ns, intname);
	int r;

	*e_r = NULL;
	buf_addch(&key, 'N');
	buf_adds(&key, dbname);
	r = dbname[0] ? fetch_key(ml, &key, &data, &len, tid, err) : 1;
	if (r == 0) {
		struct error derr = ERROR_INIT;
		r = mboxlist_decode(&ml->ns, dbname, strlen(dbname), data, len,
				    e_r, &derr);
		if (r < 0)
			error_set(err, ERR_DATA,
				  "bad mailboxes.db record for '%s': %s",
				  intname, derr.msg);
	}
	if (r == 0 && !allow_all &&
	    ((*e_r)->mbtype & (MBTYPE_RESERVE | MBTYPE_DELETED |
			       MBTYPE_INTERMEDIATE))) {
		mboxlist_entry_free(e_r);
		r = 1;
	}
	if (r == 1)
		r = error_set(err, ERR_NOINPUT, "mailbox '%s' does not exist",
			      intname);
	buf_release(&key);
	free(dbname);
	return r;
}

int mboxlist_lookup_by_uniqueid(struct mboxlist *ml, const char *uniqueid,
				struct mboxlist_entry **e_r,
				struct cyrusdb_txn **tid, struct error *err)
{
	struct buf key = BUF_INIT;
	const char *data;
	size_t len;
	int r;

	*e_r = NULL;
	buf_addch(&key, 'I');
	buf_adds(&key, uniqueid);
	r = fetch_key(ml, &key, &data, &len, tid, err);
	struct error derr = ERROR_INIT;
	if (r == 0 && mboxlist_decode(&ml->ns, NULL, 0, data, len, e_r,
				      &derr) < 0)
		r = error_set(err, ERR_DATA,
			      "bad mailboxes.db record for uniqueid '%s': %s",
			      uniqueid, derr.msg);
	/* An I record always names its mailbox. */
	if (r == 0 && !(*e_r)->name)
		(*e_r)->name = xstrdup("");
	if (r == 1)
		r = error_set(err, ERR_NOINPUT, "no mailbox has uniqueid '%s'",
			      uniqueid);
	buf_release(&key);
	return r;
}

static bool streq_null(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return !strcmp(a, b);
}

static int store(struct mboxlist *ml, char type, const char *id,
		 const struct buf *val, struct cyrusdb_txn **tid,
		 struct error *err)
{
	struct buf key = BUF_INIT;
	buf_addch(&key, type);
	buf_adds(&key, id);
	int r = cyrusdb_store(ml->db, key.s, key.len, val->s, val->len, tid);
	buf_release(&key);
	if (r < 0)
		return db_error(ml, r, "cannot write mailboxes.db", err);
	return 0;
}

int mboxlist_update(struct mboxlist *ml, const struct mboxlist_entry *e,
		    time_t now, struct cyrusdb_txn **tid, struct error *err)
{
	struct mboxlist_entry *old = NULL, *oldi = NULL, *newi = NULL;
	struct buf val = BUF_INIT;
	char *dbname = mboxname_intname_to_dbname(&ml->ns, e->name);
	int r;

	struct error lerr = ERROR_INIT;
	r = mboxlist_lookup(ml, e->name, true, &old, tid, &lerr);
	if (r < 0 && lerr.kind != ERR_NOINPUT) {
		if (err)
			*err = lerr;
		goto out;
	}
	r = 0;

	/* A replaced uniqueid loses its I record if it still names us. */
	if (old && old->uniqueid && !streq_null(old->uniqueid, e->uniqueid)) {
		r = mboxlist_lookup_by_uniqueid(ml, old->uniqueid, &oldi, tid,
						&lerr);
		if (r == 0 && !strcmp(e->name, oldi->name)) {
			struct buf key = BUF_INIT;
			buf_addch(&key, 'I');
			buf_adds(&key, old->uniqueid);
			r = cyrusdb_delete(ml->db, key.s, key.len, tid, true);
			buf_release(&key);
			if (r < 0) {
				db_error(ml, r, "cannot write mailboxes.db",
					 err);
				goto out;
			}
		} else if (r < 0 && lerr.kind == ERR_NOINPUT) {
			r = 0;
		} else if (r < 0) {
			if (err)
				*err = lerr;
			goto out;
		}
		mboxlist_entry_free(&oldi);
	}

	mboxlist_encode(&ml->ns, e, false, now, &val);
	if ((r = store(ml, 'N', dbname, &val, tid, err)) < 0)
		goto out;

	if (e->uniqueid) {
		error_clear(&lerr);
		r = mboxlist_lookup_by_uniqueid(ml, e->uniqueid, &oldi, tid,
						&lerr);
		if (r < 0 && lerr.kind != ERR_NOINPUT) {
			if (err)
				*err = lerr;
			goto out;
		}
		r = 0;
		newi = entry_copy(e);
		if (oldi) {
			if (strcmp(e->name, oldi->name)) {
				struct mboxlist_history h = {
					oldi->name,	      oldi->mtime,
					oldi->uidvalidity,    oldi->createdmodseq,
					oldi->foldermodseq,   oldi->mbtype,
					oldi->partition,
				};
				mboxlist_entry_add_history(newi, &h);
			}
			for (size_t i = 0; i < oldi->nhistory; i++)
				mboxlist_entry_add_history(newi,
							   &oldi->history[i]);
		}
		buf_reset(&val);
		mboxlist_encode(&ml->ns, newi, true, now, &val);
		r = store(ml, 'I', e->uniqueid, &val, tid, err);
	}
out:
	mboxlist_entry_free(&old);
	mboxlist_entry_free(&oldi);
	mboxlist_entry_free(&newi);
	buf_release(&val);
	free(dbname);
	return r;
}

int mboxlist_update_name(struct mboxlist *ml, const struct mboxlist_entry *e,
			 time_t now, struct cyrusdb_txn **tid,
			 struct error *err)
{
	struct buf val = BUF_INIT;
	char *dbname = mboxname_intname_to_dbname(&ml->ns, e->name);
	mboxlist_encode(&ml->ns, e, false, now, &val);
	int r = store(ml, 'N', dbname, &val, tid, err);
	buf_release(&val);
	free(dbname);
	return r;
}

int mboxlist_delete(struct mboxlist *ml, const char *intname,
		    struct cyrusdb_txn **tid, struct error *err)
{
	struct buf key = BUF_INIT;
	char *dbname = mboxname_intname_to_dbname(&ml->ns, intname);
	buf_addch(&key, 'N');
	buf_adds(&key, dbname);
	int r = cyrusdb_delete(ml->db, key.s, key.len, tid, true);
	buf_release(&key);
	free(dbname);
	if (r < 0 && r != CYRUSDB_NOTFOUND)
		return db_error(ml, r, "cannot write mailboxes.db", err);
	return 0;
}

/* The INBOX entry of the user of mbn (allow_all), or NULL. */
static struct mboxlist_entry *user_inbox(struct mboxlist *ml,
					 const struct mboxname *mbn,
					 bool allow_all)
{
	struct mboxname inbox = { 0 };
	struct buf name = BUF_INIT;
	struct mboxlist_entry *e = NULL;
	inbox.domain = mbn->domain;
	inbox.localpart = mbn->localpart;
	mboxname_intname(&ml->ns, &inbox, &name);
	mboxlist_lookup(ml, name.s, allow_all, &e, NULL, NULL);
	buf_release(&name);
	return e;
}

int mboxlist_user_path(struct mboxlist *ml, const struct mboxname *mbn,
		       const char *suffix, struct buf *out, struct error *err)
{
	struct mboxlist_entry *inbox = NULL;
	(void)err;
	if (mbn->localpart) {
		inbox = user_inbox(ml, mbn, true);
		if (!inbox) {
			/* Mid-rename: the INBOX of a former name. */
			struct buf name = BUF_INIT;
			struct mboxlist_entry *byname = NULL, *byid = NULL;
			mboxname_intname(&ml->ns, mbn, &name);
			if (!mboxlist_lookup(ml, name.s, true, &byname, NULL,
					     NULL) &&
			    byname->uniqueid &&
			    !mboxlist_lookup_by_uniqueid(ml, byname->uniqueid,
							 &byid, NULL, NULL)) {
				for (size_t i = 0; i < byid->nhistory && !inbox;
				     i++) {
					struct mboxname old;
					mboxname_from_intname(
						&ml->ns, &old,
						byid->history[i].name);
					if (old.localpart)
						inbox = user_inbox(ml, &old,
								   true);
					mboxname_release(&old);
				}
			}
			mboxlist_entry_free(&byname);
			mboxlist_entry_free(&byid);
			buf_release(&name);
		}
	}
	if (inbox && inbox->uniqueid &&
	    !(inbox->mbtype & MBTYPE_LEGACY_DIRS))
		mboxpath_user_byid(ml->cfg, inbox->uniqueid, suffix, out);
	else
		mboxpath_user_legacy(ml->cfg, mbn, suffix, out);
	mboxlist_entry_free(&inbox);
	return 0;
}

int mboxlist_sieve_path(struct mboxlist *ml, const struct mboxname *mbn,
			struct buf *out, struct error *err)
{
	struct mboxlist_entry *inbox = NULL;
	(void)err;
	/* user_sieve_path() reads the userid back with '^' as '.'. */
	struct mboxname user = { 0 };
	char *lp = mbn->localpart ? xstrdup(mbn->localpart) : NULL;
	for (char *p = lp; p && *p; p++)
		if (*p == '^')
			*p = '.';
	user.localpart = lp;
	user.domain = mbn->domain;
	if (!lp) {
		mboxpath_sieve_legacy(ml->cfg, &ml->ns, &user, out);
		goto out;
	}
	inbox = user_inbox(ml, &user, false);
	if (!inbox)
		; /* Cyrus prints an empty path. */
	else if (inbox->mbtype & MBTYPE_LEGACY_DIRS || !inbox->uniqueid)
		mboxpath_sieve_legacy(ml->cfg, &ml->ns, &user, out);
	else
		mboxpath_sieve_byid(ml->cfg, inbox->uniqueid, out);
out:
	mboxlist_entry_free(&inbox);
	free(lp);
	return 0;
}

/* ---- the dump format (JSON as jansson prints it) ---- */

/* Length of the UTF-8 sequence at s (n bytes left), 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n, uint32_t *cp)
{
	size_t len;
	uint32_t c = s[0];
	if (c < 0x80) {
		*cp = c;
		return 1;
	} else if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		c &= 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		c &= 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		c &= 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	/* Overlong forms, surrogates and too-large values are invalid. */
	if ((len == 3 && c < 0x800) || (len == 4 && c < 0x10000) ||
	    (c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff)
		return 0;
	*cp = c;
	return len;
}

static bool utf8_valid(const char *s)
{
	size_t n = strlen(s);
	uint32_t cp;
	while (n) {
		size_t l = utf8_len((const unsigned char *)s, n, &cp);
		if (!l)
			return false;
		s += l;
		n -= l;
	}
	return true;
}

/* A JSON string as jansson's dump_string() writes it (no flags). */
static void json_str(struct buf *out, const char *s)
{
	buf_addch(out, '"');
	for (; *s; s++) {
		/* the run of bytes that need no escape, in one append */
		const char *run = s;
		while ((unsigned char)*s >= 0x20 && *s != '"' && *s != '\\')
			s++;
		if (s > run)
			buf_add(out, run, (size_t)(s - run));
		if (!*s)
			break;
		unsigned char c = (unsigned char)*s;
		switch (c) {
		case '"': buf_adds(out, "\\\""); break;
		case '\\': buf_adds(out, "\\\\"); break;
		case '\b': buf_adds(out, "\\b"); break;
		case '\f': buf_adds(out, "\\f"); break;
		case '\n': buf_adds(out, "\\n"); break;
		case '\r': buf_adds(out, "\\r"); break;
		case '\t': buf_adds(out, "\\t"); break;
		default:
			if (c < 0x20)
				buf_printf(out, "\\u%04X", c);
			else
				buf_addch(out, (char)c);
		}
	}
	buf_addch(out, '"');
}

/*
 * One "key": "value" member; jansson drops members whose key or value is
 * not a valid UTF-8 string (json_string() returns NULL), and so do we.
 */
static void json_member(struct buf *out, bool *first, const char *key,
			const char *val)
{
	if (!val || !utf8_valid(val) || !utf8_valid(key))
		return;
	if (!*first)
		buf_adds(out, ", ");
	*first = false;
	json_str(out, key);
	buf_adds(out, ": ");
	json_str(out, val);
}

static void json_member_num(struct buf *out, bool *first, const char *key,
			    const char *fmt, unsigned long long v)
{
	char num[32];
	snprintf(num, sizeof(num), fmt, v);
	json_member(out, first, key, num);
}

static void json_mbtype(struct buf *out, bool *first, uint32_t mbtype)
{
	struct buf t = BUF_INIT;
	mboxlist_mbtype_to_string(mbtype, &t);
	json_member(out, first, "mbtype", t.s);
	buf_release(&t);
}

/* The ACL object: a later identifier replaces an earlier one in place. */
static void json_acl(struct buf *out, const char *acl)
{
	struct {
		char *id, *rights;
	} *items = NULL;
	size_t n = 0;
	const char *p = acl;
	while (p && *p) {
		const char *q = strchr(p, '\t');
		if (!q)
			break;
		char *id = xstrndup(p, (size_t)(q - p));
		q++;
		p = strchr(q, '\t');
		char *rights = p ? xstrndup(q, (size_t)(p - q)) : xstrdup(q);
		if (p)
			p++;
		size_t i;
		for (i = 0; i < n; i++)
			if (!strcmp(items[i].id, id))
				break;
		if (!utf8_valid(id) || !utf8_valid(rights)) {
			free(id);
			free(rights);
			continue;
		}
		if (i < n) {
			free(items[i].rights);
			items[i].rights = rights;
			free(id);
		} else {
			items = xrealloc(items, (n + 1) * sizeof(*items));
			items[n].id = id;
			items[n].rights = rights;
			n++;
		}
	}
	bool first = true;
	buf_addch(out, '{');
	for (size_t i = 0; i < n; i++) {
		json_member(out, &first, items[i].id, items[i].rights);
		free(items[i].id);
		free(items[i].rights);
	}
	buf_addch(out, '}');
	free(items);
}

void mboxlist_dump_json(const struct mboxlist_entry *e, struct buf *out)
{
	bool first = true;
	if (!e->name || !utf8_valid(e->name))
		return; /* jansson cannot make the member: nothing */
	json_str(out, e->name);
	buf_adds(out, ": {");
	json_member(out, &first, "name", e->name);
	json_member_num(out, &first, "mtime", "%lld",
			(unsigned long long)(long long)e->mtime);
	json_member_num(out, &first, "uidvalidity", "%llu", e->uidvalidity);
	json_member_num(out, &first, "createdmodseq", "%llu",
			e->createdmodseq);
	json_member_num(out, &first, "foldermodseq", "%llu", e->foldermodseq);
	json_mbtype(out, &first, e->mbtype);
	json_member(out, &first, "partition", e->partition);
	json_member(out, &first, "server", e->server);
	buf_adds(out, first ? "" : ", ");
	buf_adds(out, "\"acl\": ");
	json_acl(out, e->acl);
	first = false;
	json_member(out, &first, "uniqueid", e->uniqueid);
	json_member(out, &first, "legacy_specialuse", e->legacy_specialuse);
	buf_adds(out, ", \"name_history\": [");
	for (size_t i = 0; i < e->nhistory; i++) {
		const struct mboxlist_history *h = &e->history[i];
		bool hf = true;
		if (i)
			buf_adds(out, ", ");
		buf_addch(out, '{');
		json_member(out, &hf, "name", h->name);
		json_member_num(out, &hf, "mtime", "%lld",
				(unsigned long long)(long long)h->mtime);
		json_member_num(out, &hf, "uidvalidity", "%llu",
				h->uidvalidity);
		json_member_num(out, &hf, "createdmodseq", "%llu",
				h->createdmodseq);
		json_member_num(out, &hf, "foldermodseq", "%llu",
				h->foldermodseq);
		json_mbtype(out, &hf, h->mbtype);
		json_member(out, &hf, "partition", h->partition);
		buf_addch(out, '}');
	}
	buf_adds(out, "]}");
}

/* A small JSON reader with jansson's rules: one object or array at the
 * top, strings valid UTF-8 without NUL, later duplicate keys replace. */
enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct jval {
	enum jtype type;
	char *str;           /* J_STR */
	char **keys;         /* J_OBJ */
	struct jval **items; /* J_ARR, J_OBJ */
	size_t n, alloc;
	/* J_OBJ with many keys: open-addressing index of keys (slot: item
	 * index + 1, 0 empty), so that a dump's top-level object of 100,000
	 * mailboxes is read in linear time. */
	size_t *hidx, hcap;
};

struct jparser {
	const char *p, *end, *line_start;
	int line, depth;
	struct error *err;
};

#define JSON_MAX_DEPTH 64

static void jfree(struct jval *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < v->n; i++) {
		if (v->keys)
			free(v->keys[i]);
		jfree(v->items[i]);
	}
	free(v->keys);
	free(v->items);
	free(v->hidx);
	free(v->str);
	free(v);
}

static int jfail(struct jparser *jp, const char *what)
{
	if (jp->p >= jp->end)
		return error_set(jp->err, ERR_DATA,
				 "line %d: %s at end of input", jp->line, what);
	return error_set(jp->err, ERR_DATA, "line %d: %s near '%.10s'",
			 jp->line, what, jp->p);
}

static void jskip(struct jparser *jp)
{
	while (jp->p < jp->end && (*jp->p == ' ' || *jp->p == '\t' ||
				   *jp->p == '\n' || *jp->p == '\r')) {
		if (*jp->p == '\n')
			jp->line++;
		jp->p++;
	}
}

static int jhex4(struct jparser *jp, uint32_t *v)
{
	*v = 0;
	if (jp->end - jp->p < 4)
		return -1;
	for (int i = 0; i < 4; i++) {
		char c = *jp->p++;
		*v <<= 4;
		if (c >= '0' && c <= '9')
			*v |= (uint32_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			*v |= (uint32_t)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			*v |= (uint32_t)(c - 'A' + 10);
		else
			return -1;
	}
	return 0;
}

static void put_utf8(struct buf *b, uint32_t c)
{
	if (c < 0x80) {
		buf_addch(b, (char)c);
	} else if (c < 0x800) {
		buf_addch(b, (char)(0xc0 | (c >> 6)));
		buf_addch(b, (char)(0x80 | (c & 0x3f)));
	} else if (c < 0x10000) {
		buf_addch(b, (char)(0xe0 | (c >> 12)));
		buf_addch(b, (char)(0x80 | ((c >> 6) & 0x3f)));
		buf_addch(b, (char)(0x80 | (c & 0x3f)));
	} else {
		buf_addch(b, (char)(0xf0 | (c >> 18)));
		buf_addch(b, (char)(0x80 | ((c >> 12) & 0x3f)));
		buf_addch(b, (char)(0x80 | ((c >> 6) & 0x3f)));
		buf_addch(b, (char)(0x80 | (c & 0x3f)));
	}
}

static int jstring(struct jparser *jp, char **s_r)
{
	struct buf b = BUF_INIT;
	jp->p++; /* the '"' */
	while (jp->p < jp->end && *jp->p != '"') {
		unsigned char c = (unsigned char)*jp->p;
		if (c < 0x20)
			goto bad_control;
		if (c == '\\') {
			jp->p++;
			if (jp->p >= jp->end)
				break;
			char e = *jp->p++;
			uint32_t cp;
			switch (e) {
			case '"': buf_addch(&b, '"'); break;
			case '\\': buf_addch(&b, '\\'); break;
			case '/': buf_addch(&b, '/'); break;
			case 'b': buf_addch(&b, '\b'); break;
			case 'f': buf_addch(&b, '\f'); break;
			case 'n': buf_addch(&b, '\n'); break;
			case 'r': buf_addch(&b, '\r'); break;
			case 't': buf_addch(&b, '\t'); break;
			case 'u':
				if (jhex4(jp, &cp) < 0)
					goto bad_escape;
				if (cp >= 0xd800 && cp <= 0xdbff) {
					uint32_t lo;
					if (jp->end - jp->p < 2 ||
					    jp->p[0] != '\\' || jp->p[1] != 'u')
						goto bad_escape;
					jp->p += 2;
					if (jhex4(jp, &lo) < 0 || lo < 0xdc00 ||
					    lo > 0xdfff)
						goto bad_escape;
					cp = 0x10000 + ((cp - 0xd800) << 10) +
					     (lo - 0xdc00);
				} else if (cp >= 0xdc00 && cp <= 0xdfff) {
					goto bad_escape;
				}
				if (!cp) {
					buf_release(&b);
					return jfail(jp, "\\u0000 is not "
							 "allowed");
				}
				put_utf8(&b, cp);
				break;
			default:
				goto bad_escape;
			}
			continue;
		}
		uint32_t cp;
		size_t l = utf8_len((const unsigned char *)jp->p,
				    (size_t)(jp->end - jp->p), &cp);
		if (!l) {
			buf_release(&b);
			return jfail(jp, "invalid UTF-8");
		}
		buf_add(&b, jp->p, l);
		jp->p += l;
	}
	if (jp->p >= jp->end) {
		buf_release(&b);
		return jfail(jp, "unterminated string");
	}
	jp->p++;
	*s_r = buf_detach(&b, NULL);
	return 0;
bad_control:
	buf_release(&b);
	return jfail(jp, "control character in string");
bad_escape:
	buf_release(&b);
	return jfail(jp, "invalid escape");
}

static int jvalue(struct jparser *jp, struct jval **v_r);

static size_t jhash(const char *s)
{
	size_t h = 14695981039346656037ULL; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

/* Index of key in the object v, or v->n if absent. */
static size_t jfind(const struct jval *v, const char *key)
{
	if (!v->hidx) {
		for (size_t i = 0; i < v->n; i++)
			if (!strcmp(v->keys[i], key))
				return i;
		return v->n;
	}
	size_t mask = v->hcap - 1;
	for (size_t h = jhash(key) & mask;; h = (h + 1) & mask) {
		if (!v->hidx[h])
			return v->n;
		if (!strcmp(v->keys[v->hidx[h] - 1], key))
			return v->hidx[h] - 1;
	}
}

static void jindex(struct jval *v, size_t i)
{
	size_t h = jhash(v->keys[i]) & (v->hcap - 1);
	while (v->hidx[h])
		h = (h + 1) & (v->hcap - 1);
	v->hidx[h] = i + 1;
}

/* Later duplicates replace the value in place, as jansson does. */
static void jadd(struct jval *v, char *key, struct jval *item)
{
	if (key) {
		size_t i = jfind(v, key);
		if (i < v->n) {
			jfree(v->items[i]);
			v->items[i] = item;
			free(key);
			return;
		}
	}
	if (v->n == v->alloc) {
		v->alloc = v->alloc ? 2 * v->alloc : 8;
		v->items = xrealloc(v->items, v->alloc * sizeof(*v->items));
		if (key)
			v->keys = xrealloc(v->keys, v->alloc * sizeof(*v->keys));
	}
	if (key)
		v->keys[v->n] = key;
	v->items[v->n++] = item;
	if (key && (v->hidx || v->n > 32) && 2 * v->n > v->hcap) {
		free(v->hidx);
		v->hcap = v->hcap ? 2 * v->hcap : 128;
		v->hidx = xcalloc(v->hcap, sizeof(*v->hidx));
		for (size_t i = 0; i < v->n; i++)
			jindex(v, i);
	} else if (key && v->hidx) {
		jindex(v, v->n - 1);
	}
}

static int jcontainer(struct jparser *jp, struct jval *v)
{
	bool obj = v->type == J_OBJ;
	char close = obj ? '}' : ']';
	jp->p++;
	jskip(jp);
	if (jp->p < jp->end && *jp->p == close) {
		jp->p++;
		return 0;
	}
	for (;;) {
		char *key = NULL;
		struct jval *item = NULL;
		jskip(jp);
		if (obj) {
			if (jp->p >= jp->end || *jp->p != '"')
				return jfail(jp, "string expected");
			if (jstring(jp, &key) < 0)
				return -1;
			jskip(jp);
			if (jp->p >= jp->end || *jp->p != ':') {
				free(key);
				return jfail(jp, "':' expected");
			}
			jp->p++;
		}
		if (jvalue(jp, &item) < 0) {
			jfree(item);
			free(key);
			return -1;
		}
		jadd(v, key, item);
		jskip(jp);
		if (jp->p < jp->end && *jp->p == ',') {
			jp->p++;
			continue;
		}
		if (jp->p < jp->end && *jp->p == close) {
			jp->p++;
			return 0;
		}
		return jfail(jp, obj ? "',' or '}' expected"
				     : "',' or ']' expected");
	}
}

static int jvalue(struct jparser *jp, struct jval **v_r)
{
	struct jval *v = xzmalloc(sizeof(*v));
	int r = 0;
	*v_r = v;
	jskip(jp);
	if (jp->p >= jp->end)
		return jfail(jp, "value expected");
	if (++jp->depth > JSON_MAX_DEPTH)
		return jfail(jp, "nested too deeply");
	switch (*jp->p) {
	case '{':
		v->type = J_OBJ;
		r = jcontainer(jp, v);
		break;
	case '[':
		v->type = J_ARR;
		r = jcontainer(jp, v);
		break;
	case '"':
		v->type = J_STR;
		r = jstring(jp, &v->str);
		break;
	default: {
		static const char *const words[] = { "true", "false", "null" };
		for (size_t i = 0; i < ARRAY_SIZE(words); i++) {
			size_t n = strlen(words[i]);
			if ((size_t)(jp->end - jp->p) >= n &&
			    !memcmp(jp->p, words[i], n)) {
				v->type = i < 2 ? J_BOOL : J_NULL;
				jp->p += n;
				goto done;
			}
		}
		/* A number: -?digits[.digits][e[+-]digits] */
		const char *s = jp->p;
		if (jp->p < jp->end && *jp->p == '-')
			jp->p++;
		if (jp->p >= jp->end || !isdigit((unsigned char)*jp->p)) {
			jp->p = s;
			return jfail(jp, "invalid token");
		}
		while (jp->p < jp->end &&
		       (isdigit((unsigned char)*jp->p) || *jp->p == '.' ||
			*jp->p == 'e' || *jp->p == 'E' || *jp->p == '+' ||
			*jp->p == '-'))
			jp->p++;
		v->type = J_NUM;
	}
	}
done:
	jp->depth--;
	return r;
}

static const struct jval *jget(const struct jval *obj, const char *key)
{
	if (!obj || obj->type != J_OBJ)
		return NULL;
	size_t i = jfind(obj, key);
	return i < obj->n ? obj->items[i] : NULL;
}

/* json_string_value(json_object_get(obj, key)). */
static const char *jgetstr(const struct jval *obj, const char *key)
{
	const struct jval *v = jget(obj, key);
	return v && v->type == J_STR ? v->str : NULL;
}

static int undump_history(const struct jval *arr, struct mboxlist_entry *e,
			  const char *name, struct error *err)
{
	if (!arr || arr->type != J_ARR)
		return 0;
	for (size_t i = 0; i < arr->n; i++) {
		const struct jval *h = arr->items[i];
		struct mboxlist_history hi = { 0 };
		const char *s;
		hi.name = (char *)jgetstr(h, "name");
		if ((s = jgetstr(h, "mtime")))
			hi.mtime = (time_t)(int)strtol(s, NULL, 10);
		if ((s = jgetstr(h, "uidvalidity")))
			hi.uidvalidity = (uint32_t)strtoul(s, NULL, 10);
		if ((s = jgetstr(h, "createdmodseq")))
			hi.createdmodseq = strtoull(s, NULL, 10);
		if ((s = jgetstr(h, "foldermodseq")))
			hi.foldermodseq = strtoull(s, NULL, 10);
		if ((s = jgetstr(h, "mbtype")) &&
		    mboxlist_mbtype_from_string(s, &hi.mbtype, err) < 0)
			return error_set(err, ERR_DATA,
					 "bad mbtype '%s' in the name history "
					 "of %s",
					 s, name);
		hi.partition = (char *)jgetstr(h, "partition");
		mboxlist_entry_add_history(e, &hi);
	}
	return 0;
}

static void warnf(void (*warn)(void *, const char *), void *rock,
		  const char *what, const char *name)
{
	if (!warn)
		return;
	char *msg = xasprintf("missing %s for %s", what, name);
	warn(rock, msg);
	free(msg);
}

/* One member of the dump, as ctl_mboxlist's do_undump() reads it. */
static int undump_one(const char *name, const struct jval *v,
		      void (*warn)(void *, const char *), void *rock,
		      struct mboxlist_entry **e_r, struct error *err)
{
	struct mboxlist_entry *e = mboxlist_entry_new();
	const struct jval *jacl;
	const char *s;
	*e_r = NULL;
	if (strlen(name) >= MBOXNAME_MAX) {
		error_set(err, ERR_DATA, "mailbox name too long: %s", name);
		goto fail;
	}
	e->name = xstrdup(name);
	if ((s = jgetstr(v, "uidvalidity")))
		e->uidvalidity = (uint32_t)strtoul(s, NULL, 10);
	else
		warnf(warn, rock, "uidvalidity", name);
	if ((s = jgetstr(v, "createdmodseq")))
		e->createdmodseq = strtoull(s, NULL, 10);
	else
		warnf(warn, rock, "createdmodseq", name);
	if ((s = jgetstr(v, "foldermodseq")))
		e->foldermodseq = strtoull(s, NULL, 10);
	else
		warnf(warn, rock, "foldermodseq", name);
	if ((s = jgetstr(v, "mbtype"))) {
		if (mboxlist_mbtype_from_string(s, &e->mbtype, err) < 0) {
			error_set(err, ERR_DATA, "bad mbtype '%s' for %s", s,
				  name);
			goto fail;
		}
	} else {
		warnf(warn, rock, "mbtype", name);
	}
	/*
	 * The real tool skips entries without a partition, which makes it
	 * lose the tombstones its own -d prints; a tombstone has none.
	 */
	if (!(s = jgetstr(v, "partition")) && !(e->mbtype & MBTYPE_DELETED)) {
		error_set(err, ERR_DATA, "missing partition for %s", name);
		goto fail;
	}
	if (s && strlen(s) >= MBOXLIST_MAX_PARTITION) {
		error_set(err, ERR_DATA, "partition too long for %s", name);
		goto fail;
	}
	e->partition = xstrdup_null(s);
	if ((s = jgetstr(v, "server")))
		e->server = xstrdup(s);
	if ((jacl = jget(v, "acl"))) {
		struct buf acl = BUF_INIT;
		for (size_t i = 0; jacl->type == J_OBJ && i < jacl->n; i++) {
			const struct jval *r = jacl->items[i];
			/* printf("%s", NULL) prints "(null)" in glibc. */
			buf_printf(&acl, "%s\t%s\t", jacl->keys[i],
				   r->type == J_STR ? r->str : "(null)");
		}
		e->acl = buf_detach(&acl, NULL);
		/* imapd writes no A field on a tombstone. */
		if (!*e->acl && (e->mbtype & MBTYPE_DELETED)) {
			free(e->acl);
			e->acl = NULL;
		}
	}
	if (!(s = jgetstr(v, "uniqueid"))) {
		error_set(err, ERR_DATA, "missing uniqueid for %s", name);
		goto fail;
	}
	e->uniqueid = xstrdup(s);
	if ((s = jgetstr(v, "legacy_specialuse")))
		e->legacy_specialuse = xstrdup(s);
	if (undump_history(jget(v, "name_history"), e, name, err) < 0)
		goto fail;
	*e_r = e;
	return 0;
fail:
	mboxlist_entry_free(&e);
	return -1;
}

int mboxlist_undump_json(const char *text, size_t len,
			 void (*warn)(void *rock, const char *msg),
			 mboxlist_undump_cb *cb, void *rock, struct error *err)
{
	struct jparser jp = { text, text + len, text, 1, 0, err };
	struct jval *top = NULL;
	int r;

	jskip(&jp);
	if (jp.p >= jp.end || (*jp.p != '{' && *jp.p != '['))
		return jfail(&jp, "'[' or '{' expected");
	r = jvalue(&jp, &top);
	if (r == 0) {
		jskip(&jp);
		if (jp.p < jp.end)
			r = jfail(&jp, "end of file expected");
	}
	for (size_t i = 0; r == 0 && top->type == J_OBJ && i < top->n; i++) {
		struct mboxlist_entry *e = NULL;
		r = undump_one(top->keys[i], top->items[i], warn, rock, &e,
			       err);
		if (r == 0)
			r = cb(rock, e);
		mboxlist_entry_free(&e);
	}
	jfree(top);
	return r;
}
