/*
 * dlist.h: Cyrus's "dlist" values as stored in mailboxes.db, cyrus.header
 * and the quota database (docs/formats/mailbox.md 3.2; imap/dlist.c).
 *
 * A dlist is a tree: a kvlist %(key value key value ...), a list
 * (value value ...), or a string. Strings are byte strings (NULs allowed)
 * and print as Cyrus prints them: a bare atom when they are one, else a
 * quoted string, else a literal {N+}CRLF followed by the bytes (Cyrus
 * prints into a buffer as a client, hence the '+'). NIL is "no value".
 *
 * Numbers are strings too: dlist_add_num() prints them with %llu, and the
 * reader converts with whatever rule the field has (Cyrus uses atoi/atol/
 * strtoull depending on the field, see lib/mboxlist.c).
 */
#ifndef CYRUS_LIB_DLIST_H
#define CYRUS_LIB_DLIST_H

#include <stddef.h>
#include <stdint.h>

struct buf;
struct error;

enum dlist_type {
	DLIST_NIL,
	DLIST_STRING,
	DLIST_LIST,
	DLIST_KVLIST,
};

struct dlist {
	enum dlist_type type;
	char *key;         /* NULL for the items of a plain list */
	char *val;         /* DLIST_STRING: the bytes, NUL-terminated */
	size_t len;        /* DLIST_STRING: their length */
	struct dlist *head, *tail, *next; /* lists: the items */
};

/* Bounds of the parser: deeper or bigger input is refused as corrupt. */
#define DLIST_MAX_DEPTH 32
#define DLIST_MAX_LITERAL (64 * 1024 * 1024)

/* A new top-level kvlist or list (key may be NULL); caller frees. */
struct dlist *dlist_new_kvlist(const char *key);
struct dlist *dlist_new_list(const char *key);

/*
 * Append a child to the list or kvlist parent (key is NULL in plain lists,
 * required in kvlists). Each returns the new child, owned by parent.
 * dlist_add_atom with val NULL adds NIL.
 */
struct dlist *dlist_add_atom(struct dlist *parent, const char *key,
			     const char *val);
struct dlist *dlist_add_map(struct dlist *parent, const char *key,
			    const char *data, size_t len);
struct dlist *dlist_add_num(struct dlist *parent, const char *key,
			    unsigned long long val);
struct dlist *dlist_add_kvlist(struct dlist *parent, const char *key);
struct dlist *dlist_add_list(struct dlist *parent, const char *key);

/* The first child of a kvlist named key, or NULL; points into kv. */
struct dlist *dlist_get(const struct dlist *kv, const char *key);
/* Its string value (NULL if absent, NIL or not a string). */
const char *dlist_get_string(const struct dlist *kv, const char *key);

/*
 * Appends dl's text form to out, byte for byte as Cyrus's dlist_printbuf()
 * with printkeys 0: the top-level key is not printed.
 */
void dlist_print(const struct dlist *dl, struct buf *out);

/*
 * Parses one dlist value that must fill data[0..len) exactly, with the
 * rules of Cyrus's dlist_parsesax() (the reader of mailboxes.db): a bare
 * atom runs to the next space, less trailing ')'; "quoted" with backslash
 * quoting the next byte; {N} or {N+} CRLF literals; the atom NIL is no
 * value. On success *dl_r is a new tree (caller frees) and 0 is returned;
 * on truncated or malformed input, ERR_DATA with the offset in err.
 */
int dlist_parse(const char *data, size_t len, struct dlist **dl_r,
		struct error *err);

void dlist_free(struct dlist **dl);

#endif
