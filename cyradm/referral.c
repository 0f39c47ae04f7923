/*
 * referral.c: Murder referrals (RFC 2193) as Cyrus::IMAP::Admin follows
 * them: a frontend that answers NO [REFERRAL imap://...] sends us to the
 * backend that has the mailbox; we connect there, authenticate as we did
 * on the frontend, run the same command, and hang up.
 */
#include "compat.h"

#include "cyradm.h"
#include "xmalloc.h"

/* The commands whose referrals Admin.pm follows (not LIST, GETACL, XFER). */
static bool follows_referral(const char *cmd)
{
	static const char *const verbs[] = {
		"CREATE", "DELETE", "DELETEACL", "GETQUOTA", "GETQUOTAROOT",
		"RENAME", "SETACL", "SETQUOTA", "SETMETADATA", "SUBSCRIBE",
		"UNSUBSCRIBE", "RECONSTRUCT", NULL,
	};
	size_t n = strcspn(cmd, " ");
	for (const char *const *v = verbs; *v; v++)
		if (strlen(*v) == n && !strncasecmp(cmd, *v, n))
			return true;
	return false;
}

/*
 * The server of the first URL of "[REFERRAL imap://[user[;AUTH=m]@]host
 * [:port]/mailbox ...]": "host" or "host:port", malloc'd; NULL if the text
 * is no such referral.
 */
char *cyradm_referral_server(const char *text)
{
	if (strncasecmp(text, "[REFERRAL ", 10))
		return NULL;
	const char *u = text + 10;
	if (strncasecmp(u, "imap://", 7))
		return NULL;
	u += 7;
	size_t len = strcspn(u, "/] ");
	const char *at = memchr(u, '@', len);
	if (at) {
		len -= (size_t)(at + 1 - u);
		u = at + 1;
	}
	if (!len)
		return NULL;
	return xstrndup(u, len);
}

int cyradm_vrun(struct cyradm *cy, imapclient_untagged_fn *cb, void *rock,
		struct buf *text, struct error *err, const char *fmt,
		va_list ap)
{
	struct buf cmd = BUF_INIT;
	va_list ap2;
	va_copy(ap2, ap);
	int r = imapclient_vrun(cy->conn->ic, cb, rock, text, err, fmt, ap);
	char *server = NULL;

	if (r != IMAP_NO || !cy->conn->referrals || !text ||
	    !(server = cyradm_referral_server(text->s)))
		goto out;
	/* Synchronizing literals: the backend may not do LITERAL+. */
	imapclient_vfmt(NULL, &cmd, fmt, ap2);
	if (!follows_referral(cmd.s))
		goto out;

	struct error cerr = ERROR_INIT;
	struct cyradm_conn *b = cyradm_connect(server, NULL, &cy->conn->auth,
					       &cerr);
	fflush(cy->out);
	if (!b) {
		fprintf(cy->err, "cyradm: cannot connect to %s\n", server);
		goto out;
	}
	if (!cyradm_authenticate(b, &cy->conn->auth, cy->err)) {
		fprintf(cy->err, "cyradm: cannot authenticate to %s\n", server);
		cyradm_disconnect(&b);
		goto out;
	}
	struct error berr = ERROR_INIT;
	r = imapclient_run(b->ic, cb, rock, text, &berr, "%a", cmd.s);
	if (r < 0) {
		/* The backend went away, not our server: say so, go on. */
		fprintf(cy->err, "\nReferral connection to server lost.\n");
		buf_sets(text, berr.msg);
		r = IMAP_NO;
	}
	cyradm_disconnect(&b);
out:
	va_end(ap2);
	free(server);
	buf_release(&cmd);
	return r;
}
