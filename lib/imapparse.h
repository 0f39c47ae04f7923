/*
 * imapparse.h: splitting a stream of IMAP server bytes into responses, and
 * tokens of a response.
 *
 * The reader is a push parser: feed it whatever bytes arrived, then ask for
 * complete responses until it says it needs more. It never trusts the
 * server: lines, literals and whole responses are bounded, and anything
 * that is not an IMAP response is an error naming what was wrong. After an
 * error the stream is out of step and the connection must be dropped.
 *
 *	struct imapparse p;
 *	imapparse_init(&p, NULL);
 *	imapparse_feed(&p, bytes, n);
 *	while ((r = imapparse_next(&p, &reply, &err)) > 0)
 *		use(&reply);
 *	if (r < 0) ... err.msg ...
 *	imapparse_release(&p);
 */
#ifndef CYRUS_LIB_IMAPPARSE_H
#define CYRUS_LIB_IMAPPARSE_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "error.h"

struct imapparse_limits {
	size_t max_line;     /* bytes of one line, literals excluded */
	size_t max_literal;  /* bytes of one literal */
	size_t max_response; /* bytes of a whole response, literals included */
};

/* 64 KiB lines, 64 MiB literals, 128 MiB responses. */
extern const struct imapparse_limits imapparse_default_limits;

enum imap_reply_kind {
	IMAP_REPLY_UNTAGGED,     /* "* ..." */
	IMAP_REPLY_CONTINUATION, /* "+ ..." */
	IMAP_REPLY_TAGGED,       /* "TAG OK|NO|BAD ..." */
};

/*
 * One response. The strings point into the reply's own storage and stay
 * valid until the next imapparse_next() or imapparse_release().
 *
 * keyword: untagged: the word after "* " (or after "* N "), as sent;
 *          tagged: "OK", "NO" or "BAD" (as sent); continuation: "".
 * text:    what follows the keyword and one space; literals are inline as
 *          "{N}\r\n" and the N bytes (so text may hold NULs: use textlen).
 * msgno:   untagged "* 12 EXISTS" gives 12, otherwise -1.
 */
struct imap_reply {
	enum imap_reply_kind kind;
	const char *tag;
	const char *keyword;
	long msgno;
	const char *text;
	size_t textlen;
	struct buf raw_;    /* private */
	struct buf parts_;  /* private */
};

struct imapparse {
	struct imapparse_limits limits;
	struct buf in;      /* bytes fed, not yet consumed */
	size_t pos;         /* consumed prefix of in */
	struct buf cur;     /* the response being assembled */
	size_t line_start;  /* where the current line starts in cur */
	size_t literal_left;/* bytes of literal still to copy */
	bool in_literal;
	bool failed;
	struct error failure;
};

void imapparse_init(struct imapparse *p, const struct imapparse_limits *lim);
void imapparse_release(struct imapparse *p);
void imapparse_feed(struct imapparse *p, const void *data, size_t len);
/* True if bytes were fed that do not yet form a whole response. */
bool imapparse_pending(const struct imapparse *p);

/*
 * Returns 1 and fills *reply with the next complete response, 0 if more
 * bytes are needed, -1 with err on garbage or a limit exceeded (and the
 * same error again on every later call).
 */
int imapparse_next(struct imapparse *p, struct imap_reply *reply,
		   struct error *err);

void imap_reply_init(struct imap_reply *r);
void imap_reply_release(struct imap_reply *r);

/* Tokens of a response text (the grammar's atoms, strings and lists). */
enum imap_token_kind {
	IMAP_TOK_END,
	IMAP_TOK_ATOM,    /* also numbers and NIL: check imap_token_is_nil */
	IMAP_TOK_QUOTED,
	IMAP_TOK_LITERAL,
	IMAP_TOK_LPAREN,
	IMAP_TOK_RPAREN,
};

struct imap_token {
	enum imap_token_kind kind;
	struct buf value;   /* unquoted / literal bytes / atom text */
};

struct imap_tokenizer {
	const char *p, *end;
};

void imap_tokenizer_init(struct imap_tokenizer *t, const char *text,
			 size_t len);
/*
 * Skips spaces, then reads one token into tok (whose value is reset).
 * Returns 0, or -1 with err on a malformed string or literal.
 */
int imap_tokenizer_next(struct imap_tokenizer *t, struct imap_token *tok,
			struct error *err);
bool imap_token_is_nil(const struct imap_token *tok);

/* Parses "{N}" or "{N+}" at the end of s[0..len); returns N or -1. */
long long imapparse_literal_suffix(const char *s, size_t len, size_t *start_r);

#endif
