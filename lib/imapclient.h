/*
 * imapclient.h: an IMAP client connection: connect, TLS (implicit or
 * STARTTLS), SASL or LOGIN, tagged commands with their untagged data.
 *
 *	struct imapclient *ic;
 *	if (imapclient_connect("localhost", "143", NULL, &ic, &err) < 0) ...
 *	r = imapclient_run(ic, on_list, &rock, &text, &err,
 *			   "LIST %s %s", "", "*");
 *	r is IMAP_OK, IMAP_NO, IMAP_BAD, or -1 (connection or protocol
 *	failure: the connection is dead, see imapclient_alive()).
 *	imapclient_close(&ic);
 *
 * Command formats: %a atom (sent as is), %s astring (atom, "quoted" or a
 * literal as the bytes need), %q string (quoted or literal), %d int,
 * %u unsigned, %% a percent sign. Literals are LITERAL+ when the server
 * offers it, otherwise synchronizing (we wait for the server's "+").
 */
#ifndef CYRUS_LIB_IMAPCLIENT_H
#define CYRUS_LIB_IMAPCLIENT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "error.h"
#include "imapparse.h"
#include "saslclient.h"
#include "tls.h"

enum imap_status {
	IMAP_OK = 0,
	IMAP_NO = 1,
	IMAP_BAD = 2,
};

struct imapclient;

/* Called for every untagged response while a command runs. */
typedef void imapclient_untagged_fn(const struct imap_reply *r, void *rock);

/*
 * Connects to host (a name, an IPv4 address, an IPv6 address, optionally
 * in brackets, or "name:port") at port (a number or service name; NULL:
 * 143, or the one in host), reads the greeting and, with tls not NULL,
 * does TLS first (implicit TLS, "imaps"). On failure returns -1 with err
 * and sets errno to connect()'s error, or to 0 if the name did not
 * resolve (err.kind ERR_NOUSER then).
 */
int imapclient_connect(const char *host, const char *port,
		       const struct tls_opts *tls, struct imapclient **ic_r,
		       struct error *err);
/* Sends LOGOUT if the connection is alive, then closes; *ic becomes NULL. */
void imapclient_close(struct imapclient **ic);
/* Drops the connection without a word (after fork, on fatal errors). */
void imapclient_abandon(struct imapclient **ic);

bool imapclient_alive(const struct imapclient *ic);
/* The host as given to connect; points into ic. */
const char *imapclient_host(const struct imapclient *ic);
/* Its canonical name (getaddrinfo's): what imclient calls the server's
 * name, in SASL, cyradm's prompt and messages. */
const char *imapclient_canonical_host(const struct imapclient *ic);
/* The greeting's text, e.g. "[CAPABILITY ...] host Cyrus IMAP ... ready". */
const char *imapclient_greeting(const struct imapclient *ic);
bool imapclient_tls_active(const struct imapclient *ic);

/*
 * Capabilities as last seen (greeting, CAPABILITY, or a [CAPABILITY]
 * response code). imapclient_capability() sends CAPABILITY to refresh.
 * has_cap matches a whole word case-insensitively ("LITERAL+", "AUTH=PLAIN").
 */
int imapclient_capability(struct imapclient *ic, struct error *err);
bool imapclient_has_cap(const struct imapclient *ic, const char *cap);
/* The words of AUTH=... joined by spaces ("" if none); points into ic. */
const char *imapclient_auth_mechs(const struct imapclient *ic);

/* Formats a command (see above) into out; used by imapclient_run. */
void imapclient_vfmt(struct imapclient *ic, struct buf *out, const char *fmt,
		     va_list ap);
/* Appends s as an astring (atom, quoted, literal) or a quoted string. */
void imapclient_add_astring(struct imapclient *ic, struct buf *out,
			    const char *s, size_t len);
void imapclient_add_qstring(struct imapclient *ic, struct buf *out,
			    const char *s, size_t len);

/*
 * Runs one command and waits for its tagged response. Untagged responses go
 * to cb (if not NULL). text_r (if not NULL) gets the tagged response's text
 * ("Completed", "Mailbox does not exist" ...). Returns IMAP_OK/NO/BAD, or
 * -1 with err when the connection failed (then it is dead).
 */
int imapclient_run(struct imapclient *ic, imapclient_untagged_fn *cb,
		   void *rock, struct buf *text_r, struct error *err,
		   const char *fmt, ...);
int imapclient_vrun(struct imapclient *ic, imapclient_untagged_fn *cb,
		    void *rock, struct buf *text_r, struct error *err,
		    const char *fmt, va_list ap);

/*
 * Pipelining. imapclient_send_ahead formats and sends a command now, and
 * queues it; when imapclient_run is later asked for the very same command
 * (byte for byte) it reads that command's answer instead of sending it
 * again. Any other command first waits for (and throws away) the answers
 * of everything sent ahead, so the server always sees commands in the order
 * they are run: send ahead only what will be run next, in order, and only
 * commands whose text does not depend on an earlier answer.
 *
 * Returns 0 when sent; 1 when not (a synchronizing literal, which must wait
 * for "+"; IMAPCLIENT_AHEAD_MAX commands or IMAPCLIENT_AHEAD_BYTES already
 * out, so that neither side blocks writing while the other does; a dead
 * connection; an earlier failure); -1 with err when sending failed (the
 * connection is not marked dead: the answers before may still be read, and
 * running the command sends it again and fails as it would have).
 */
#define IMAPCLIENT_AHEAD_MAX 64
#define IMAPCLIENT_AHEAD_BYTES 32768
int imapclient_send_ahead(struct imapclient *ic, struct error *err,
			  const char *fmt, ...);
int imapclient_vsend_ahead(struct imapclient *ic, struct error *err,
			   const char *fmt, va_list ap);
/* How many commands sent ahead still await their answer (0 for NULL). */
size_t imapclient_ahead(const struct imapclient *ic);
/*
 * Between imapclient_cork and imapclient_uncork, what is sent ahead is
 * kept and goes out in one write at uncork (a system call per command
 * costs more than the rest of a pipelined command's work). uncork: 0, or
 * -1 with err if the write failed (those commands count as not sent).
 */
void imapclient_cork(struct imapclient *ic);
int imapclient_uncork(struct imapclient *ic, struct error *err);

/* STARTTLS then a fresh CAPABILITY. IMAP_OK, IMAP_NO/BAD, or -1 with err. */
int imapclient_starttls(struct imapclient *ic, const struct tls_opts *tls,
			struct buf *text_r, struct error *err);

/*
 * SASL authentication with the best of mechs (NULL: what the server
 * offers), then each next one as XS Cyrus::IMAP does when one fails.
 * Returns IMAP_OK when authenticated, IMAP_NO when every mechanism was
 * refused (text_r: the last refusal), -1 with err on a connection
 * failure. *password_r (if not NULL) gets the password typed, malloc'd
 * (caller frees) or NULL.
 */
int imapclient_authenticate(struct imapclient *ic,
			    const struct saslclient_opts *opts,
			    const char *mechs, struct buf *text_r,
			    char **password_r, struct error *err);

#endif
