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

/* The letters of mbtype into t (at most 8 bytes and a NUL); their count. */
static size_t mbtype_letters(uint32_t mbtype, char *t)
{
	size_t n = 0;
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
		t[n++] = kinds[MBTYPE_KIND(mbtype)];
	for (size_t i = 0; i < ARRAY_SIZE(flags); i++)
		if (mbtype & flags[i].bit)
			t[n++] = flags[i].c;
	t[n] = '\0';
	return n;
}

void mboxlist_mbtype_to_string(uint32_t mbtype, struct buf *out)
{
	char t[16];
	buf_add(out, t, mbtype_letters(mbtype, t));
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

/*
 * The decoding of foreach without allocations: the N record's dlist
 * value, in the shape Cyrus writes it (single-letter keys, scalar values,
 * A as a kvlist of scalars, H as a list of such kvlists), is scanned in
 * place and every string is copied into one arena that is reused from
 * record to record; the entry it fills borrows from the arena. Whatever
 * else a value holds (literals, nested lists elsewhere, a bad key, an
 * unknown type letter, a second A or H) goes to mboxlist_decode(), which
 * decides; so both paths give the same entry for every input.
 */
struct fast {
	struct buf arena; /* never reallocated while a record is decoded */
	struct mboxlist_history *hist;
	size_t halloc;
};

struct fscan {
	const char *p, *end;
	struct buf *a;
};

/* n bytes and a NUL into the arena; NULL when it is full. */
static char *arena_put(struct buf *a, const char *s, size_t n)
{
	if (a->len + n + 1 >= a->alloc)
		return NULL;
	char *d = a->s + a->len;
	memcpy(d, s, n);
	d[n] = '\0';
	a->len += n + 1;
	return d;
}

/* mboxname_dbname_to_intname into the arena: a plain name (no domain,
 * no DELETED prefix, no empty level, no NUL) is mapped byte by byte. */
static char *fast_intname(const struct mboxname_ns *ns, const char *db,
			  size_t len, struct buf *a)
{
	const char *sep = len ? memchr(db, MBOXNAME_DB_HIERSEP, len) : NULL;
	size_t first = sep ? (size_t)(sep - db) : len;
	bool plain = len && db[0] != MBOXNAME_DB_HIERSEP &&
		     db[len - 1] != MBOXNAME_DB_HIERSEP &&
		     !memchr(db, '\0', len) &&
		     !memchr(db, MBOXNAME_DB_DOMAINSEP, len) &&
		     !(ns->deletedprefix &&
		       strlen(ns->deletedprefix) == first &&
		       !memcmp(db, ns->deletedprefix, first));
	if (!plain) {
		char *s = mboxname_dbname_to_intname(ns, db, len);
		char *r = arena_put(a, s, strlen(s));
		free(s);
		return r;
	}
	if (a->len + len + 1 >= a->alloc)
		return NULL;
	char *d = a->s + a->len;
	for (size_t i = 0; i < len; i++) {
		char c = db[i];
		if (c == MBOXNAME_DB_HIERSEP) {
			if (db[i + 1] == MBOXNAME_DB_HIERSEP)
				return NULL; /* an empty level: general path */
			c = '.';
		} else if (c == '.') {
			c = '^';
		}
		d[i] = c;
	}
	d[len] = '\0';
	a->len += len + 1;
	return d;
}

/* One scalar as dlist's parse_string reads it: *s_r NULL for NIL. */
static int fs_string(struct fscan *sc, char **s_r)
{
	const char *p = sc->p;
	if (p >= sc->end || *p == '{' || *p == '(' || *p == '%')
		return -1;
	if (*p == '"') {
		struct buf *a = sc->a;
		char *start = a->s + a->len, *d = start;
		char *lim = a->s + a->alloc - 1;
		p++;
		while (p < sc->end) {
			char c = *p++;
			if (c == '"') {
				*d = '\0';
				a->len = (size_t)(d + 1 - a->s);
				sc->p = p;
				*s_r = start;
				return 0;
			}
			if (c == '\\') {
				if (p >= sc->end)
					return -1;
				c = *p++;
			}
			if (d >= lim)
				return -1;
			*d++ = c;
		}
		return -1;
	}
	/* A bare atom: up to the next space, less trailing ')'. */
	const char *sp = memchr(p, ' ', (size_t)(sc->end - p));
	if (!sp)
		sp = sc->end;
	while (sp > p && sp[-1] == ')')
		sp--;
	sc->p = sp;
	if (sp - p == 3 && !memcmp(p, "NIL", 3)) {
		*s_r = NULL;
		return 0;
	}
	*s_r = arena_put(sc->a, p, (size_t)(sp - p));
	return *s_r ? 0 : -1;
}

/* After an item: ' ' and more (0), or the closing ')' (1), or -1. */
static int fs_next(struct fscan *sc)
{
	if (sc->p >= sc->end)
		return -1;
	if (*sc->p == ')') {
		sc->p++;
		return 1;
	}
	if (*sc->p != ' ' || ++sc->p >= sc->end)
		return -1;
	return 0;
}

/* A single-letter key and its space. */
static int fs_key(struct fscan *sc, char *k_r)
{
	if (sc->end - sc->p < 3 || sc->p[1] != ' ' || sc->p[0] < 'A' ||
	    sc->p[0] > 'Z')
		return -1;
	*k_r = sc->p[0];
	sc->p += 2;
	return 0;
}

/* %(ID RIGHTS ...) as the "id TAB rights TAB" string decode_dlist makes. */
static int fs_acl(struct fscan *sc, char **acl_r)
{
	struct buf *a = sc->a;
	char *start = a->s + a->len;
	sc->p += 2;
	if (sc->p >= sc->end)
		return -1;
	if (*sc->p == ')') {
		sc->p++;
	} else {
		for (int more = 0; !more;) {
			char *id, *rights;
			size_t at = a->len;
			if (fs_string(sc, &id) < 0 || !id ||
			    strlen(id) != a->len - 1 - at)
				return -1; /* NIL or NUL in a key */
			a->s[a->len - 1] = '\t';
			if (sc->p >= sc->end || *sc->p != ' ')
				return -1;
			sc->p++;
			at = a->len;
			if (fs_string(sc, &rights) < 0)
				return -1;
			if (!rights && !arena_put(a, "", 0))
				return -1;
			if (rights && strlen(rights) != a->len - 1 - at)
				return -1;
			a->s[a->len - 1] = '\t';
			if ((more = fs_next(sc)) < 0)
				return -1;
		}
	}
	if (!arena_put(a, "", 0))
		return -1;
	*acl_r = start;
	return 0;
}

/* (%(N name M mtime ...) ...), as decode_history reads it. */
static int fs_history(const struct mboxname_ns *ns, struct fscan *sc,
		      struct fast *f, size_t *n_r)
{
	size_t n = 0;
	sc->p++;
	if (sc->p >= sc->end)
		return -1;
	if (*sc->p == ')') {
		sc->p++;
		*n_r = 0;
		return 0;
	}
	for (int more = 0; !more;) {
		struct mboxlist_history hi = { 0 };
		if (sc->end - sc->p < 2 || sc->p[0] != '%' || sc->p[1] != '(')
			return -1;
		sc->p += 2;
		if (sc->p >= sc->end)
			return -1;
		if (*sc->p == ')')
			sc->p++;
		else
			for (int imore = 0; !imore;) {
				char k, *v;
				if (fs_key(sc, &k) < 0 || fs_string(sc, &v) < 0)
					return -1;
				switch (k) {
				case 'N':
					hi.name = fast_intname(ns, v ? v : "",
							       v ? strlen(v) : 0,
							       sc->a);
					if (!hi.name)
						return -1;
					break;
				case 'M': hi.mtime = (time_t)(int)field_ll(v); break;
				case 'V': hi.uidvalidity = (uint32_t)field_ll(v); break;
				case 'C': hi.createdmodseq = field_u64(v); break;
				case 'F': hi.foldermodseq = field_u64(v); break;
				case 'T':
					if (mboxlist_mbtype_from_string(
						    v, &hi.mbtype, NULL) < 0)
						return -1;
					break;
				case 'P': hi.partition = v; break;
				}
				if ((imore = fs_next(sc)) < 0)
					return -1;
			}
		if (n == f->halloc) {
			f->halloc = f->halloc ? 2 * f->halloc : 8;
			f->hist = xrealloc(f->hist,
					   f->halloc * sizeof(*f->hist));
		}
		f->hist[n++] = hi;
		if ((more = fs_next(sc)) < 0)
			return -1;
	}
	*n_r = n;
	return 0;
}

/* mboxlist_decode() of an N record into e (borrowing from f), or false
 * if the value needs the general decoder. */
static bool fast_decode(const struct mboxname_ns *ns, const char *dbname,
			size_t dbnamelen, const char *data, size_t datalen,
			struct fast *f, struct mboxlist_entry *e)
{
	struct fscan sc = { data + 2, data + datalen, &f->arena };
	bool seen_a = false, seen_h = false;
	memset(e, 0, sizeof(*e));
	if (datalen < 3 || data[0] != '%' || data[1] != '(')
		return false;
	if (dbnamelen > MBOXNAME_MAX)
		dbnamelen = MBOXNAME_MAX;
	buf_reset(&f->arena);
	buf_grow(&f->arena, 2 * datalen + 2 * dbnamelen + 64);
	if (!(e->name = fast_intname(ns, dbname, dbnamelen, &f->arena)))
		return false;
	if (*sc.p == ')') {
		sc.p++;
	} else {
		for (int more = 0; !more;) {
			char k, *v;
			if (fs_key(&sc, &k) < 0)
				return false;
			if (k == 'A' && *sc.p == '%') {
				if (seen_a || sc.end - sc.p < 2 ||
				    sc.p[1] != '(' || fs_acl(&sc, &e->acl) < 0)
					return false;
				seen_a = true;
			} else if (k == 'H' && *sc.p == '(') {
				if (seen_h || fs_history(ns, &sc, f,
							 &e->nhistory) < 0)
					return false;
				e->history = f->hist;
				seen_h = true;
			} else {
				if (fs_string(&sc, &v) < 0)
					return false;
				switch (k) {
				case 'C': e->createdmodseq = field_u64(v); break;
				case 'F': e->foldermodseq = field_u64(v); break;
				case 'I': e->uniqueid = v; break;
				case 'M': e->mtime = (time_t)(int)field_ll(v); break;
				case 'P': e->partition = v; break;
				case 'S': e->server = v; break;
				case 'T':
					if (mboxlist_mbtype_from_string(
						    v, &e->mbtype, NULL) < 0)
						return false;
					break;
				case 'V': e->uidvalidity = (uint32_t)field_ll(v); break;
				}
			}
			if ((more = fs_next(&sc)) < 0)
				return false;
		}
	}
	if (sc.p != sc.end)
		return false;
	/* Cyrus always has an ACL string after a dlist, "" if none. */
	if (!e->acl && !(e->acl = arena_put(&f->arena, "", 0)))
		return false;
	return true;
}

struct foreach_rock {
	struct mboxlist *ml;
	unsigned flags;
	mboxlist_cb *cb;
	void *rock;
	struct fast fast;
};

static int foreach_cb(void *rock, const char *key, size_t keylen,
		      const char *data, size_t datalen)
{
	struct foreach_rock *fr = rock;
	struct mboxlist_entry fe, *e = NULL;
	if (!keylen || key[0] != 'N')
		return 0;
	if (fast_decode(&fr->ml->ns, key + 1, keylen - 1, data, datalen,
			&fr->fast, &fe)) {
		e = &fe;
	} else if (mboxlist_decode(&fr->ml->ns, key + 1, keylen - 1, data,
				   datalen, &e, NULL) < 0) {
		return 0; /* Cyrus skips what it cannot parse. */
	}
	int r = 0;
	if ((e->mbtype & MBTYPE_DELETED) && !(fr->flags & MBOXLIST_TOMBSTONES))
		goto out;
	if ((e->mbtype & MBTYPE_INTERMEDIATE) &&
	    !(fr->flags & MBOXLIST_INTERMEDIATES))
		goto out;
	r = fr->cb(fr->rock, e);
out:
	if (e != &fe)
		mboxlist_entry_free(&e);
	return r;
}

int mboxlist_foreach(struct mboxlist *ml, unsigned flags, mboxlist_cb *cb,
		     void *rock, struct cyrusdb_txn **tid, struct error *err)
{
	struct foreach_rock fr = { ml, flags, cb, rock, { BUF_INIT, NULL, 0 } };
	int r = cyrusdb_foreach(ml->db, "N", 1, NULL, foreach_cb, &fr, tid);
	buf_release(&fr.fast.arena);
	free(fr.fast.hist);
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

static bool utf8_valid_n(const char *s, size_t n)
{
	uint32_t cp;
	while (n) {
		if (!((unsigned char)*s & 0x80)) {
			s++;
			n--;
			continue;
		}
		size_t l = utf8_len((const unsigned char *)s, n, &cp);
		if (!l)
			return false;
		s += l;
		n -= l;
	}
	return true;
}

/* Byte classes of the JSON writer: 0 copied, 1 escaped, 2 UTF-8. */
static const unsigned char json_class[256] = {
	[0x00 ... 0x1f] = 1, ['"'] = 1, ['\\'] = 1, [0x80 ... 0xff] = 2,
};

/*
 * s (n bytes) as a JSON string the way jansson's dump_string() writes it
 * (no flags). False if s is not valid UTF-8, which jansson refuses: out
 * then holds a partial string that the caller cuts off.
 */
static bool json_strn(struct buf *out, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + n;
	buf_grow(out, n + 2);
	buf_addch(out, '"');
	while (p < end) {
		const unsigned char *run = p;
		while (p < end && !json_class[*p])
			p++;
		if (p > run)
			buf_add(out, run, (size_t)(p - run));
		if (p == end)
			break;
		unsigned char c = *p;
		if (json_class[c] == 2) {
			uint32_t cp;
			size_t l = utf8_len(p, (size_t)(end - p), &cp);
			if (!l)
				return false;
			buf_add(out, p, l);
			p += l;
			continue;
		}
		switch (c) {
		case '"': buf_add(out, "\\\"", 2); break;
		case '\\': buf_add(out, "\\\\", 2); break;
		case '\b': buf_add(out, "\\b", 2); break;
		case '\f': buf_add(out, "\\f", 2); break;
		case '\n': buf_add(out, "\\n", 2); break;
		case '\r': buf_add(out, "\\r", 2); break;
		case '\t': buf_add(out, "\\t", 2); break;
		default: buf_printf(out, "\\u%04X", c);
		}
		p++;
	}
	buf_addch(out, '"');
	return true;
}

/*
 * One member: lit is the '"key": ' text (a valid constant). jansson
 * drops members whose value is not a valid UTF-8 string (json_string()
 * returns NULL), and so do we.
 */
static void json_member_n(struct buf *out, bool *first, const char *lit,
			  const char *val, size_t vlen)
{
	size_t mark = out->len;
	if (!*first)
		buf_add(out, ", ", 2);
	buf_adds(out, lit);
	if (!json_strn(out, val, vlen)) {
		buf_setlen(out, mark);
		return;
	}
	*first = false;
}

static void json_member(struct buf *out, bool *first, const char *lit,
			const char *val)
{
	if (val)
		json_member_n(out, first, lit, val, strlen(val));
}

/* A number as the string "%llu" (or "%lld" when negative) prints. */
static void json_member_num(struct buf *out, bool *first, const char *lit,
			    unsigned long long v, bool is_signed)
{
	char num[24], *p = num + sizeof(num);
	bool neg = is_signed && (long long)v < 0;
	unsigned long long u = neg ? 0 - v : v;
	do {
		*--p = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (neg)
		*--p = '-';
	json_member_n(out, first, lit, p, (size_t)(num + sizeof(num) - p));
}

static void json_mbtype(struct buf *out, bool *first, uint32_t mbtype)
{
	char t[16];
	size_t n = mbtype_letters(mbtype, t);
	json_member_n(out, first, "\"mbtype\": ", t, n);
}

/* The ACL object: a later identifier replaces an earlier one in place. */
static void json_acl(struct buf *out, const char *acl)
{
	struct item {
		const char *id, *rights;
		size_t idlen, rlen;
	} fixed[16], *items = fixed;
	size_t n = 0, alloc = ARRAY_SIZE(fixed);
	const char *p = acl;
	while (p && *p) {
		const char *q = strchr(p, '\t');
		if (!q)
			break;
		struct item it = { p, q + 1, (size_t)(q - p), 0 };
		p = strchr(q + 1, '\t');
		it.rlen = p ? (size_t)(p - it.rights) : strlen(it.rights);
		if (p)
			p++;
		size_t i;
		for (i = 0; i < n; i++)
			if (items[i].idlen == it.idlen &&
			    !memcmp(items[i].id, it.id, it.idlen))
				break;
		if (!utf8_valid_n(it.id, it.idlen) ||
		    !utf8_valid_n(it.rights, it.rlen))
			continue;
		if (i < n) {
			items[i].rights = it.rights;
			items[i].rlen = it.rlen;
			continue;
		}
		if (n == alloc) {
			alloc *= 2;
			if (items == fixed) {
				items = xmalloc(alloc * sizeof(*items));
				memcpy(items, fixed, sizeof(fixed));
			} else {
				items = xrealloc(items,
						 alloc * sizeof(*items));
			}
		}
		items[n++] = it;
	}
	buf_addch(out, '{');
	for (size_t i = 0; i < n; i++) {
		if (i)
			buf_add(out, ", ", 2);
		json_strn(out, items[i].id, items[i].idlen);
		buf_add(out, ": ", 2);
		json_strn(out, items[i].rights, items[i].rlen);
	}
	buf_addch(out, '}');
	if (items != fixed)
		free(items);
}

void mboxlist_dump_json(const struct mboxlist_entry *e, struct buf *out)
{
	bool first = true;
	size_t mark = out->len;
	if (!e->name)
		return;
	size_t namelen = strlen(e->name);
	if (!json_strn(out, e->name, namelen)) {
		buf_setlen(out, mark); /* jansson cannot make the member */
		return;
	}
	buf_add(out, ": {", 3);
	json_member_n(out, &first, "\"name\": ", e->name, namelen);
	json_member_num(out, &first, "\"mtime\": ",
			(unsigned long long)(long long)e->mtime, true);
	json_member_num(out, &first, "\"uidvalidity\": ", e->uidvalidity,
			false);
	json_member_num(out, &first, "\"createdmodseq\": ", e->createdmodseq,
			false);
	json_member_num(out, &first, "\"foldermodseq\": ", e->foldermodseq,
			false);
	json_mbtype(out, &first, e->mbtype);
	json_member(out, &first, "\"partition\": ", e->partition);
	json_member(out, &first, "\"server\": ", e->server);
	buf_adds(out, first ? "\"acl\": " : ", \"acl\": ");
	json_acl(out, e->acl);
	first = false;
	json_member(out, &first, "\"uniqueid\": ", e->uniqueid);
	json_member(out, &first, "\"legacy_specialuse\": ",
		    e->legacy_specialuse);
	buf_adds(out, ", \"name_history\": [");
	for (size_t i = 0; i < e->nhistory; i++) {
		const struct mboxlist_history *h = &e->history[i];
		bool hf = true;
		if (i)
			buf_add(out, ", ", 2);
		buf_addch(out, '{');
		json_member(out, &hf, "\"name\": ", h->name);
		json_member_num(out, &hf, "\"mtime\": ",
				(unsigned long long)(long long)h->mtime, true);
		json_member_num(out, &hf, "\"uidvalidity\": ", h->uidvalidity,
				false);
		json_member_num(out, &hf, "\"createdmodseq\": ",
				h->createdmodseq, false);
		json_member_num(out, &hf, "\"foldermodseq\": ",
				h->foldermodseq, false);
		json_mbtype(out, &hf, h->mbtype);
		json_member(out, &hf, "\"partition\": ", h->partition);
		buf_addch(out, '}');
	}
	buf_add(out, "]}", 2);
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
	/* Streaming: more input may follow end; hit_end says that a
	 * failure came from running into end (the caller reads on and
	 * parses the member again). */
	bool more, hit_end;
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
		jp->hit_end = true;
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
	if (jp->end - jp->p < 4) {
		jp->hit_end = true;
		return -1;
	}
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
					if (jp->end - jp->p < 2)
						jp->hit_end = true;
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
			if (jp->end - jp->p < 4)
				jp->hit_end = true;
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
			if ((size_t)(jp->end - jp->p) < n)
				jp->hit_end = true;
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
			if (jp->p >= jp->end)
				jp->hit_end = true;
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

/* Where the dump comes from: all in memory, or read on from a file. */
struct jsource {
	FILE *in;        /* NULL: text is all there is */
	struct buf win;  /* the window read from in */
	bool eof;
};

#define JSON_CHUNK ((size_t)256 << 10)

/*
 * Keeps the bytes from *from on and reads more after them; jp and *from
 * then point into the moved window. 0, or -1 with ERR_IO.
 */
static int jrefill(struct jsource *src, struct jparser *jp,
		   const char **from)
{
	struct buf *w = &src->win;
	size_t keep = (size_t)(jp->end - *from);
	memmove(w->s, *from, keep);
	buf_setlen(w, keep);
	/* A chunk more, or as much as is kept: a long member doubles. */
	size_t want = keep > JSON_CHUNK ? keep : JSON_CHUNK;
	buf_grow(w, want);
	size_t n = fread(w->s + keep, 1, want, src->in);
	buf_setlen(w, keep + n);
	if (n < want) {
		if (ferror(src->in))
			return error_sys(jp->err, ERR_IO, errno,
					 "cannot read the dump");
		src->eof = true;
	}
	*from = w->s;
	jp->p = w->s;
	jp->end = w->s + w->len;
	jp->more = !src->eof;
	return 0;
}

/*
 * Skips whitespace, reading on while the window ends in it. -1 with
 * ERR_IO on a read error.
 */
static int jskip_more(struct jsource *src, struct jparser *jp)
{
	for (;;) {
		jskip(jp);
		if (jp->p < jp->end || !jp->more)
			return 0;
		const char *from = jp->p;
		if (jrefill(src, jp, &from) < 0)
			return -1;
		jp->p = from;
	}
}

/*
 * The dump, one member at a time: each is parsed, checked and handed to
 * cb before the next is read, so memory does not grow with the dump. A
 * member cut by the end of the window is parsed again after a refill.
 * A top-level array is read and ignored, as the real tool does.
 */
static int undump_stream(struct jsource *src, const char *text, size_t len,
			 void (*warn)(void *rock, const char *msg),
			 mboxlist_undump_cb *cb, void *rock, struct error *err)
{
	struct jparser jp = { text, text + len, text, 1, 0, err, false, false };
	int r = 0;
	if (src->in) {
		jp.p = jp.end = src->win.s;
		jp.more = true;
	}
	if (jskip_more(src, &jp) < 0)
		return -1;
	if (jp.p >= jp.end || (*jp.p != '{' && *jp.p != '['))
		return jfail(&jp, "'[' or '{' expected");
	bool obj = *jp.p == '{';
	char close = obj ? '}' : ']';
	jp.p++;
	if (jskip_more(src, &jp) < 0)
		return -1;
	if (jp.p < jp.end && *jp.p == close) {
		jp.p++;
		goto tail;
	}
	for (bool last = false; !last;) {
		const char *start = jp.p;
		int line = jp.line;
		char *key = NULL;
		struct jval *item = NULL;
		jp.hit_end = false;
		jp.depth = 1;
		r = 0;
		jskip(&jp);
		if (obj) {
			if (jp.p >= jp.end || *jp.p != '"')
				r = jfail(&jp, "string expected");
			else if ((r = jstring(&jp, &key)) == 0) {
				jskip(&jp);
				if (jp.p >= jp.end || *jp.p != ':')
					r = jfail(&jp, "':' expected");
				else
					jp.p++;
			}
		}
		if (r == 0)
			r = jvalue(&jp, &item);
		if (r == 0) {
			jskip(&jp);
			if (jp.p < jp.end && *jp.p == ',')
				jp.p++;
			else if (jp.p < jp.end && *jp.p == close)
				last = true, jp.p++;
			else
				r = jfail(&jp, obj ? "',' or '}' expected"
						   : "',' or ']' expected");
		}
		if (r < 0 && jp.hit_end && jp.more) {
			/* Cut by the window: read on, parse it again. */
			jfree(item);
			free(key);
			if (jrefill(src, &jp, &start) < 0)
				return -1;
			jp.p = start;
			jp.line = line;
			last = false;
			continue;
		}
		if (r == 0 && obj) {
			struct mboxlist_entry *e = NULL;
			r = undump_one(key, item, warn, rock, &e, err);
			if (r == 0)
				r = cb(rock, e);
			mboxlist_entry_free(&e);
		}
		jfree(item);
		free(key);
		if (r)
			return r;
		if (src->in && !last && jp.p - src->win.s > (long)JSON_CHUNK) {
			/* Let go of what is parsed, keep the window small. */
			const char *from = jp.p;
			if (jrefill(src, &jp, &from) < 0)
				return -1;
			jp.p = from;
		}
	}
tail:
	if (jskip_more(src, &jp) < 0)
		return -1;
	if (jp.p < jp.end)
		return jfail(&jp, "end of file expected");
	return 0;
}

int mboxlist_undump_json(const char *text, size_t len,
			 void (*warn)(void *rock, const char *msg),
			 mboxlist_undump_cb *cb, void *rock, struct error *err)
{
	struct jsource src = { NULL, BUF_INIT, true };
	return undump_stream(&src, text, len, warn, cb, rock, err);
}

int mboxlist_undump_json_file(FILE *in,
			      void (*warn)(void *rock, const char *msg),
			      mboxlist_undump_cb *cb, void *rock,
			      struct error *err)
{
	struct jsource src = { in, BUF_INIT, false };
	int r = undump_stream(&src, NULL, 0, warn, cb, rock, err);
	buf_release(&src.win);
	return r;
}
