/*
 * tls.h: a TLS client over a connected socket, with OpenSSL.
 *
 * The server certificate is verified against the system store, or against
 * cafile/capath when given, and its name against the host we meant to reach;
 * a failed check is an error whose message says why (expired, self-signed,
 * name mismatch ...) unless verify is off.
 */
#ifndef CYRUS_LIB_TLS_H
#define CYRUS_LIB_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "error.h"

struct tls_opts {
	const char *cafile;   /* NULL or "": the system store */
	const char *capath;
	const char *certfile; /* client certificate, NULL for none */
	const char *keyfile;  /* its key; NULL: in certfile */
	bool no_verify;       /* accept any certificate */
};

struct tls_conn;

/*
 * Runs the handshake on fd (connected, blocking) for host. Returns 0 and
 * *conn_r, or -1 with err: ERR_PERM when the server's certificate was not
 * trusted, ERR_CONFIG for unusable CA or client certificate files,
 * ERR_UNAVAILABLE for any other handshake failure. fd stays the caller's.
 */
int tls_start(int fd, const char *host, const struct tls_opts *opts,
	      struct tls_conn **conn_r, struct error *err);
/* Returns bytes read (0 at EOF) or -1 with err. */
ssize_t tls_read(struct tls_conn *c, void *data, size_t len,
		 struct error *err);
/* Writes all of data; 0 or -1 with err. */
int tls_write(struct tls_conn *c, const void *data, size_t len,
	      struct error *err);
/* True if decrypted bytes are waiting (a poll on fd would not show them). */
bool tls_pending(struct tls_conn *c);
/* Strength in bits of the cipher in use. */
int tls_ssf(struct tls_conn *c);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384"; points into c. */
const char *tls_description(struct tls_conn *c);
/* Sends close_notify (best effort) and frees; *c becomes NULL. */
void tls_close(struct tls_conn **c);

#endif
