#include "compat.h"
#include "tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "xmalloc.h"

struct tls_conn {
	SSL_CTX *ctx;
	SSL *ssl;
	char desc[128];
};

/* The first queued OpenSSL error as text, or fallback. */
static const char *ssl_reason(const char *fallback)
{
	static char msg[256];
	unsigned long e = ERR_get_error();
	if (!e)
		return fallback;
	ERR_error_string_n(e, msg, sizeof(msg));
	ERR_clear_error();
	return msg;
}

int tls_start(int fd, const char *host, const struct tls_opts *opts,
	      struct tls_conn **conn_r, struct error *err)
{
	struct tls_conn *c = xzmalloc(sizeof(*c));
	bool verify = !opts || !opts->no_verify;

	ERR_clear_error();
	c->ctx = SSL_CTX_new(TLS_client_method());
	if (!c->ctx) {
		error_set(err, ERR_SOFTWARE, "cannot set up TLS: %s",
			  ssl_reason("SSL_CTX_new failed"));
		goto fail;
	}
	SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
	if (opts && ((opts->cafile && *opts->cafile) ||
		     (opts->capath && *opts->capath))) {
		const char *f = opts->cafile && *opts->cafile ? opts->cafile : NULL;
		const char *d = opts->capath && *opts->capath ? opts->capath : NULL;
		if (!SSL_CTX_load_verify_locations(c->ctx, f, d)) {
			error_set(err, ERR_CONFIG,
				  "cannot load CA certificates from '%s': %s",
				  f ? f : d, ssl_reason("bad file"));
			goto fail;
		}
	} else if (!SSL_CTX_set_default_verify_paths(c->ctx)) {
		error_set(err, ERR_CONFIG, "cannot load the system CA store: %s",
			  ssl_reason("unknown error"));
		goto fail;
	}
	if (opts && opts->certfile && *opts->certfile) {
		const char *key = opts->keyfile && *opts->keyfile ?
			opts->keyfile : opts->certfile;
		if (SSL_CTX_use_certificate_chain_file(c->ctx,
						       opts->certfile) != 1 ||
		    SSL_CTX_use_PrivateKey_file(c->ctx, key,
						SSL_FILETYPE_PEM) != 1 ||
		    SSL_CTX_check_private_key(c->ctx) != 1) {
			error_set(err, ERR_CONFIG,
				  "cannot use client certificate '%s': %s",
				  opts->certfile, ssl_reason("bad file"));
			goto fail;
		}
	}
	SSL_CTX_set_verify(c->ctx, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE,
			   NULL);

	c->ssl = SSL_new(c->ctx);
	if (!c->ssl || !SSL_set_fd(c->ssl, fd)) {
		error_set(err, ERR_SOFTWARE, "cannot set up TLS: %s",
			  ssl_reason("SSL_new failed"));
		goto fail;
	}
	/* SNI only for names, and the name check against host. */
	if (host && *host && !strchr(host, ':') &&
	    strspn(host, "0123456789.") != strlen(host))
		SSL_set_tlsext_host_name(c->ssl, host);
	if (verify && host && *host) {
		X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
		if (strspn(host, "0123456789.") == strlen(host) ||
		    strchr(host, ':'))
			X509_VERIFY_PARAM_set1_ip_asc(vp, host);
		else
			X509_VERIFY_PARAM_set1_host(vp, host, 0);
	}
	if (SSL_connect(c->ssl) != 1) {
		long v = SSL_get_verify_result(c->ssl);
		if (verify && v != X509_V_OK)
			error_set(err, ERR_PERM,
				  "TLS: server certificate of '%s' not "
				  "trusted: %s", host ? host : "",
				  X509_verify_cert_error_string(v));
		else
			error_set(err, ERR_UNAVAILABLE,
				  "TLS handshake with '%s' failed: %s",
				  host ? host : "",
				  ssl_reason("connection closed"));
		goto fail;
	}
	snprintf(c->desc, sizeof(c->desc), "%s %s", SSL_get_version(c->ssl),
		 SSL_get_cipher_name(c->ssl));
	*conn_r = c;
	return 0;
fail:
	tls_close(&c);
	return -1;
}

ssize_t tls_read(struct tls_conn *c, void *data, size_t len,
		 struct error *err)
{
	for (;;) {
		ERR_clear_error();
		int n = SSL_read(c->ssl, data, len > INT32_MAX ? INT32_MAX : (int)len);
		if (n > 0)
			return n;
		int e = SSL_get_error(c->ssl, n);
		if (e == SSL_ERROR_ZERO_RETURN)
			return 0;
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			continue;
		if (e == SSL_ERROR_SYSCALL && errno == EINTR)
			continue;
		if (e == SSL_ERROR_SYSCALL && !ERR_peek_error())
			return 0; /* unclean EOF: treat as closed */
		return error_set(err, ERR_IO, "TLS read failed: %s",
				 ssl_reason("error"));
	}
}

int tls_write(struct tls_conn *c, const void *data, size_t len,
	      struct error *err)
{
	const char *p = data;
	while (len) {
		ERR_clear_error();
		int n = SSL_write(c->ssl, p, len > INT32_MAX ? INT32_MAX : (int)len);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		int e = SSL_get_error(c->ssl, n);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			continue;
		if (e == SSL_ERROR_SYSCALL && errno == EINTR)
			continue;
		return error_set(err, ERR_IO, "TLS write failed: %s",
				 ssl_reason("connection closed"));
	}
	return 0;
}

bool tls_pending(struct tls_conn *c)
{
	return SSL_pending(c->ssl) > 0;
}

int tls_ssf(struct tls_conn *c)
{
	int bits = 0;
	SSL_get_cipher_bits(c->ssl, &bits);
	return bits;
}

const char *tls_description(struct tls_conn *c)
{
	return c->desc;
}

void tls_close(struct tls_conn **cp)
{
	struct tls_conn *c = *cp;
	if (!c)
		return;
	if (c->ssl) {
		SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
	}
	if (c->ctx)
		SSL_CTX_free(c->ctx);
	free(c);
	*cp = NULL;
}
