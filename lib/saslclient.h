/*
 * saslclient.h: the client side of a SASL exchange, with Cyrus libsasl2.
 *
 * The caller moves the bytes (IMAP AUTHENTICATE); this module picks the
 * mechanism, answers the library's questions (authentication id,
 * authorization id, password) from saslclient_opts, and asks
 * opts->get_password only when a mechanism needs a password that was not
 * given. The password it got is kept for later attempts on the same handle.
 */
#ifndef CYRUS_LIB_SASLCLIENT_H
#define CYRUS_LIB_SASLCLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

struct saslclient_opts {
	const char *service;   /* "imap" */
	const char *user;      /* authentication id */
	const char *authz;     /* authorization id, NULL or "" for none */
	const char *password;  /* NULL: ask get_password */
	unsigned minssf, maxssf;
	/* Returns a malloc'd password (caller frees) or NULL to give up. */
	char *(*get_password)(void *rock);
	void *rock;
};

struct saslclient;

/*
 * Loads the SASL library's plugins (about 10 ms), once; saslclient_new
 * does it if nobody did. Returns 0, or -1 with err.
 */
int saslclient_init(struct error *err);
/*
 * errno as libsasl2's own calls left it, ours aside (0: untouched): a
 * Perl client's $! when it dies after a failed login (loading GSSAPI's
 * plugin leaves ENOENT; SCRAM's exchange resets it).
 */
int saslclient_errno(void);

/*
 * host: the server's name; local/remote: "ip;port" strings or NULL.
 * ext_ssf: strength of a TLS layer already in place (0 for none).
 */
int saslclient_new(const struct saslclient_opts *opts, const char *host,
		   const char *local, const char *remote, unsigned ext_ssf,
		   struct saslclient **sc_r, struct error *err);
void saslclient_free(struct saslclient **sc);

/*
 * Starts with the best mechanism of mechlist (space separated). Returns 0
 * with *mech_r (points into the library) and the initial response in
 * out/outlen (out NULL: none; points into the library), -1 with err.
 */
int saslclient_start(struct saslclient *sc, const char *mechlist,
		     const char **mech_r, const char **out, unsigned *outlen,
		     struct error *err);
/* One step: the server's challenge in, the response out. 0 or -1 with err. */
int saslclient_step(struct saslclient *sc, const char *in, unsigned inlen,
		    const char **out, unsigned *outlen, struct error *err);
/* Security strength of the negotiated layer (0: none). */
unsigned saslclient_ssf(struct saslclient *sc);
/*
 * The security layer negotiated (ssf > 0): what goes out is encoded in
 * pieces of at most saslclient_maxout bytes, what comes in decoded (out
 * points into sc, valid until the next call; a partial packet gives 0
 * bytes). 0, or -1 with err.
 */
unsigned saslclient_maxout(struct saslclient *sc);
int saslclient_encode(struct saslclient *sc, const char *in, unsigned len,
		      const char **out, unsigned *outlen, struct error *err);
int saslclient_decode(struct saslclient *sc, const char *in, unsigned len,
		      const char **out, unsigned *outlen, struct error *err);
/* The password the user typed or was given, or NULL; points into sc. */
const char *saslclient_password(struct saslclient *sc);

/* Base64 helpers for the IMAP side; 0 or -1 (bad input). */
void saslclient_b64_encode(const char *in, unsigned len, char **out_r);
int saslclient_b64_decode(const char *in, size_t len, char **out_r,
			  unsigned *outlen_r);

#endif
