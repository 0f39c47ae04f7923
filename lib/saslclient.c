#include "compat.h"
#include "saslclient.h"

#include <errno.h>
#include <strings.h>
#include <sasl/sasl.h>
#include <sasl/saslutil.h>

#include "xmalloc.h"

struct saslclient {
	struct saslclient_opts opts;
	sasl_conn_t *conn;
	sasl_callback_t cb[5];
	sasl_secret_t *secret;
	char *password;
};

static bool sasl_inited;

static int cb_simple(void *context, int id, const char **result,
		     unsigned *len)
{
	struct saslclient *sc = context;
	const char *v = NULL;

	switch (id) {
	case SASL_CB_USER:
		v = sc->opts.authz ? sc->opts.authz : "";
		break;
	case SASL_CB_AUTHNAME:
		v = sc->opts.user ? sc->opts.user : "";
		break;
	default:
		return SASL_BADPARAM;
	}
	*result = v;
	if (len)
		*len = (unsigned)strlen(v);
	return SASL_OK;
}

static int cb_pass(sasl_conn_t *conn UNUSED, void *context, int id,
		   sasl_secret_t **psecret)
{
	struct saslclient *sc = context;

	if (id != SASL_CB_PASS)
		return SASL_BADPARAM;
	if (!sc->password) {
		if (sc->opts.password)
			sc->password = xstrdup(sc->opts.password);
		else if (sc->opts.get_password)
			sc->password = sc->opts.get_password(sc->opts.rock);
		if (!sc->password)
			return SASL_FAIL;
	}
	if (!sc->secret) {
		size_t n = strlen(sc->password);
		sc->secret = xzmalloc(sizeof(sasl_secret_t) + n + 1);
		sc->secret->len = n;
		memcpy(sc->secret->data, sc->password, n);
	}
	*psecret = sc->secret;
	return SASL_OK;
}

static int sasl_error(struct saslclient *sc, struct error *err, int r,
		      const char *what)
{
	const char *detail = sc && sc->conn ? sasl_errdetail(sc->conn) :
		sasl_errstring(r, NULL, NULL);
	return error_set(err, r == SASL_NOMECH ? ERR_UNAVAILABLE : ERR_PERM,
			 "%s: %s", what, detail ? detail : "SASL error");
}

/*
 * sasl_client_init dlopens every plugin of the directory to look for
 * client mechanisms; the server's auxiliary property plugins have none,
 * and sasldb's pulls in Berkeley DB: a tenth of our startup, for nothing.
 */
static int skip_server_plugins(void *context, const char *file,
			       sasl_verify_type_t type)
{
	(void)context;
	if (type != SASL_VRFY_PLUGIN || !file)
		return SASL_OK;
	const char *base = strrchr(file, '/');
	base = base ? base + 1 : file;
	static const char *const server_only[] = { "libsasldb.", "libsql.",
						   "libldapdb." };
	for (size_t i = 0; i < sizeof(server_only) / sizeof(*server_only); i++)
		if (!strncmp(base, server_only[i], strlen(server_only[i])))
			return SASL_CONTINUE;
	return SASL_OK;
}

/* errno as the library's own calls left it (see saslclient_errno). */
static int lib_errno;
#define IN_LIB(call) \
	do { \
		errno = lib_errno; \
		call; \
		lib_errno = errno; \
	} while (0)

int saslclient_errno(void)
{
	return lib_errno;
}

int saslclient_init(struct error *err)
{
	static sasl_callback_t global[] = {
		{ SASL_CB_VERIFYFILE,
		  (int (*)(void))(void *)skip_server_plugins, NULL },
		{ SASL_CB_LIST_END, NULL, NULL },
	};
	if (sasl_inited)
		return 0;
	int r;
	IN_LIB(r = sasl_client_init(global));
	if (r != SASL_OK)
		return sasl_error(NULL, err, r, "cannot initialise SASL");
	sasl_inited = true;
	return 0;
}

int saslclient_new(const struct saslclient_opts *opts, const char *host,
		   const char *local, const char *remote, unsigned ext_ssf,
		   struct saslclient **sc_r, struct error *err)
{
	int r;

	if (saslclient_init(err) < 0)
		return -1;
	struct saslclient *sc = xzmalloc(sizeof(*sc));
	sc->opts = *opts;
	sc->cb[0] = (sasl_callback_t){ SASL_CB_USER,
		(int (*)(void))(void *)cb_simple, sc };
	sc->cb[1] = (sasl_callback_t){ SASL_CB_AUTHNAME,
		(int (*)(void))(void *)cb_simple, sc };
	sc->cb[2] = (sasl_callback_t){ SASL_CB_PASS,
		(int (*)(void))(void *)cb_pass, sc };
	sc->cb[3] = (sasl_callback_t){ SASL_CB_LIST_END, NULL, NULL };

	IN_LIB(r = sasl_client_new(opts->service ? opts->service : "imap",
				   host, local, remote, sc->cb, 0, &sc->conn));
	if (r != SASL_OK) {
		sasl_error(sc, err, r, "cannot start SASL");
		saslclient_free(&sc);
		return -1;
	}
	sasl_security_properties_t props;
	memset(&props, 0, sizeof(props));
	props.min_ssf = opts->minssf;
	/* A security layer (GSSAPI, DIGEST-MD5) only without TLS, which
	 * does that job better; as Cyrus::IMAP, up to maxssf. */
	props.max_ssf = ext_ssf ? 0 : opts->maxssf;
	props.maxbufsize = ext_ssf ? 0 : 65536;
	sasl_setprop(sc->conn, SASL_SEC_PROPS, &props);
	if (ext_ssf) {
		sasl_ssf_t ssf = ext_ssf;
		sasl_setprop(sc->conn, SASL_SSF_EXTERNAL, &ssf);
	}
	*sc_r = sc;
	return 0;
}

void saslclient_free(struct saslclient **scp)
{
	struct saslclient *sc = *scp;
	if (!sc)
		return;
	if (sc->conn)
		IN_LIB(sasl_dispose(&sc->conn));
	if (sc->password) {
		explicit_bzero(sc->password, strlen(sc->password));
		free(sc->password);
	}
	if (sc->secret) {
		explicit_bzero(sc->secret->data, sc->secret->len);
		free(sc->secret);
	}
	free(sc);
	*scp = NULL;
}

int saslclient_start(struct saslclient *sc, const char *mechlist,
		     const char **mech_r, const char **out, unsigned *outlen,
		     struct error *err)
{
	int r;
	*out = NULL;
	*outlen = 0;
	do {
		IN_LIB(r = sasl_client_start(sc->conn, mechlist, NULL, out,
					     outlen, mech_r));
	} while (r == SASL_INTERACT);
	/* In a Perl client libkrb5 rereads its profile after the failed
	 * credential cache lookup, which leaves errno 0; here it is the
	 * lookup's ENOENT. The Perl one's exit status is what counts. */
	if (mech_r && *mech_r && (!strncasecmp(*mech_r, "GSSAPI", 6) ||
				  !strncasecmp(*mech_r, "GS2-", 4)))
		lib_errno = 0;
	if (r != SASL_OK && r != SASL_CONTINUE)
		return sasl_error(sc, err, r, "SASL");
	return 0;
}

int saslclient_step(struct saslclient *sc, const char *in, unsigned inlen,
		    const char **out, unsigned *outlen, struct error *err)
{
	int r;
	*out = NULL;
	*outlen = 0;
	do {
		IN_LIB(r = sasl_client_step(sc->conn, in, inlen, NULL, out,
					    outlen));
	} while (r == SASL_INTERACT);
	if (r != SASL_OK && r != SASL_CONTINUE)
		return sasl_error(sc, err, r, "SASL");
	return 0;
}

unsigned saslclient_ssf(struct saslclient *sc)
{
	const void *v = NULL;
	if (sasl_getprop(sc->conn, SASL_SSF, &v) != SASL_OK || !v)
		return 0;
	return *(const sasl_ssf_t *)v;
}

unsigned saslclient_maxout(struct saslclient *sc)
{
	const void *v = NULL;
	if (sasl_getprop(sc->conn, SASL_MAXOUTBUF, &v) != SASL_OK || !v ||
	    !*(const unsigned *)v)
		return 4096;
	return *(const unsigned *)v;
}

int saslclient_encode(struct saslclient *sc, const char *in, unsigned len,
		      const char **out, unsigned *outlen, struct error *err)
{
	int r;
	IN_LIB(r = sasl_encode(sc->conn, in, len, out, outlen));
	return r == SASL_OK ? 0 : sasl_error(sc, err, r, "SASL layer");
}

int saslclient_decode(struct saslclient *sc, const char *in, unsigned len,
		      const char **out, unsigned *outlen, struct error *err)
{
	int r;
	IN_LIB(r = sasl_decode(sc->conn, in, len, out, outlen));
	return r == SASL_OK ? 0 : sasl_error(sc, err, r, "SASL layer");
}

const char *saslclient_password(struct saslclient *sc)
{
	return sc->password;
}

void saslclient_b64_encode(const char *in, unsigned len, char **out_r)
{
	unsigned cap = (len + 2) / 3 * 4 + 1, outlen = 0;
	char *out = xmalloc(cap);
	if (sasl_encode64(in, len, out, cap, &outlen) != SASL_OK)
		outlen = 0;
	out[outlen] = '\0';
	*out_r = out;
}

int saslclient_b64_decode(const char *in, size_t len, char **out_r,
			  unsigned *outlen_r)
{
	unsigned cap = (unsigned)(len / 4 * 3 + 4), outlen = 0;
	if (len > 64 * 1024 * 1024)
		return -1;
	char *out = xmalloc(cap);
	if (len && sasl_decode64(in, (unsigned)len, out, cap, &outlen) != SASL_OK) {
		free(out);
		return -1;
	}
	out[outlen < cap ? outlen : cap - 1] = '\0';
	*out_r = out;
	*outlen_r = outlen;
	return 0;
}
