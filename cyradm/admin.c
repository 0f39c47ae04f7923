/*
 * admin.c: connecting and authenticating the way Cyrus::IMAP::Admin and
 * Cyrus::IMAP do, so that prompts, fallbacks and messages are the same.
 */
#include "compat.h"

#include <fcntl.h>
#include <pwd.h>
#include <termios.h>
#include <unistd.h>

#include "cyradm.h"
#include "xmalloc.h"

static char *dupornull(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

void cyradm_auth_copy(struct cyradm_auth *dst, const struct cyradm_auth *src)
{
	dst->user = dupornull(src->user);
	dst->authz = dupornull(src->authz);
	dst->mech = dupornull(src->mech);
	dst->password = dupornull(src->password);
	dst->tlskey = dupornull(src->tlskey);
	dst->tlskey_set = src->tlskey_set;
	dst->notls = src->notls;
	dst->cafile = dupornull(src->cafile);
	dst->capath = dupornull(src->capath);
	dst->minssf = src->minssf;
	dst->maxssf = src->maxssf;
	dst->service = dupornull(src->service);
}

void cyradm_auth_release(struct cyradm_auth *a)
{
	if (a->password)
		explicit_bzero(a->password, strlen(a->password));
	free(a->user);
	free(a->authz);
	free(a->mech);
	free(a->password);
	free(a->tlskey);
	free(a->cafile);
	free(a->capath);
	free(a->service);
	memset(a, 0, sizeof(*a));
}

/* Words of a CAPABILITY response, as Admin.pm's callback splits them. */
static void admin_caps(const struct imap_reply *r, void *rock)
{
	struct cyradm_conn *c = rock;
	if (strcasecmp(r->keyword, "CAPABILITY"))
		return;
	char *text = xstrndup(r->text, r->textlen);
	char *save = NULL;
	for (char *w = strtok_r(text, " ", &save); w;
	     w = strtok_r(NULL, " ", &save)) {
		if (!strcasecmp(w, "MAILBOX-REFERRALS"))
			c->referrals = true;
		else if (!strcasecmp(w, "METADATA"))
			c->metadata = true;
		else if (!strcasecmp(w, "LIST-EXTENDED"))
			c->list_extended = true;
		else if (!strcasecmp(w, "SPECIAL-USE"))
			c->list_special_use = true;
		else if (!strcasecmp(w, "CREATE-SPECIAL-USE"))
			c->create_special_use = true;
	}
	free(text);
}

static bool implicit_tls_port(const char *port)
{
	return port && (!strcmp(port, "993") || !strcmp(port, "imaps"));
}

struct cyradm_conn *cyradm_connect(const char *server, const char *port,
				   const struct cyradm_auth *a,
				   struct error *err)
{
	struct imapclient *ic = NULL;
	struct tls_opts tls = { 0 };
	const char *host = server;
	bool implicit = implicit_tls_port(port);

	/* imaps://host[:port] is implicit TLS on any port; imap:// is not. */
	if (!strncasecmp(host, "imaps://", 8)) {
		host += 8;
		implicit = true;
	} else if (!strncasecmp(host, "imap://", 7)) {
		host += 7;
	}
	char *name = xstrndup(host, strcspn(host, "/"));
	if (implicit && a) {
		tls.cafile = a->cafile;
		tls.capath = a->capath;
		if (a->tlskey && *a->tlskey) {
			tls.certfile = a->tlskey;
			tls.keyfile = a->tlskey;
		}
	}
	if (implicit && !port && !strchr(name, ':'))
		port = "993";
	int r = imapclient_connect(name, port, implicit ? &tls : NULL, &ic,
				   err);
	free(name);
	if (r < 0)
		return NULL;
	struct cyradm_conn *c = xzmalloc(sizeof(*c));
	c->ic = ic;
	c->servername = xstrdup(server);
	if (imapclient_run(ic, admin_caps, c, NULL, err, "CAPABILITY") < 0) {
		cyradm_disconnect(&c);
		errno = 0;
		return NULL;
	}
	c->caps_fresh = true;
	c->port = port ? xstrdup(port) : NULL;
	return c;
}

const char *cyradm_server_shown(const struct cyradm_conn *c)
{
	/* imaps://HOST:PORT is ours alone: shown as typed. */
	if (strstr(c->servername, "://"))
		return c->servername;
	return imapclient_canonical_host(c->ic);
}

void cyradm_close_lanes(struct cyradm_conn *c)
{
	for (size_t i = 0; i < c->nlanes; i++)
		cyradm_disconnect(&c->lanes[i]);
	free(c->lanes);
	c->lanes = NULL;
	c->nlanes = 0;
}

/* The delimiter of LIST "" "": (flags) "sep" name. */
static void list_sep(const struct imap_reply *r, void *rock)
{
	char *sep = rock;
	const char *q = memchr(r->text, ')', r->textlen);
	if (strcasecmp(r->keyword, "LIST") || !q)
		return;
	size_t left = r->textlen - (size_t)(q - r->text);
	if (left >= 5 && q[1] == ' ' && q[2] == '"' && q[4] == '"')
		*sep = q[3];
}

size_t cyradm_open_lanes(struct cyradm_conn *c, size_t n)
{
	struct error err = ERROR_INIT;
	if (c->nlanes || !n || !c->authenticated || !c->auth.password)
		return c->nlanes;
	FILE *quiet = fopen("/dev/null", "w");
	if (!quiet)
		return 0;
	c->lanes = xzmalloc(n * sizeof(*c->lanes));
	while (c->nlanes < n) {
		struct cyradm_conn *l = cyradm_connect(c->servername, c->port,
						       &c->auth, &err);
		error_clear(&err);
		if (!l)
			break;
		if (!cyradm_authenticate(l, &c->auth, quiet)) {
			cyradm_disconnect(&l);
			break;
		}
		c->lanes[c->nlanes++] = l;
	}
	fclose(quiet);
	if (c->nlanes && !c->sep &&
	    imapclient_run(c->lanes[0]->ic, list_sep, &c->sep, NULL, &err,
			   "LIST \"\" \"\"") != IMAP_OK)
		c->sep = 0;
	error_clear(&err);
	if (!c->sep)
		cyradm_close_lanes(c);  /* no separator: no keys */
	return c->nlanes;
}

void cyradm_disconnect(struct cyradm_conn **cp)
{
	struct cyradm_conn *c = *cp;
	if (!c)
		return;
	cyradm_close_lanes(c);
	imapclient_close(&c->ic);
	free(c->port);
	free(c->servername);
	free(c->error);
	cyradm_auth_release(&c->auth);
	free(c);
	*cp = NULL;
}

/*
 * The SASL password prompt of Cyrus::IMAP: "Password: " on stdout, then
 * the terminal without echo, or the first line of stdin without one.
 * stdin is read a byte at a time so that nothing meant for the shell is
 * swallowed.
 */
static char *read_password_fd(int fd)
{
	struct buf b = BUF_INIT;
	char ch;
	for (;;) {
		ssize_t n = read(fd, &ch, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || ch == '\n')
			break;
		buf_addch(&b, ch);
	}
	if (b.len && b.s[b.len - 1] == '\r')
		buf_setlen(&b, b.len - 1);
	return buf_detach(&b, NULL);
}

/*
 * Without a terminal, the Perl one's getpass() reads stdin through C stdio:
 * the line it wants comes with the rest of a 4 KiB buffer, which is lost to
 * the shell. Same here, so that scripts behave the same.
 */
static char *read_password_stdin(void)
{
	struct buf b = BUF_INIT;
	char chunk[4096];
	for (;;) {
		ssize_t n = read(STDIN_FILENO, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		char *nl = memchr(chunk, '\n', (size_t)n);
		buf_add(&b, chunk, nl ? (size_t)(nl - chunk) : (size_t)n);
		if (nl)
			break;
	}
	explicit_bzero(chunk, sizeof(chunk));
	return buf_detach(&b, NULL);
}

static char *prompt_password(const char *prompt, FILE *promptf)
{
	int tty = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
	char *pw;

	fputs(prompt, promptf);
	fflush(promptf);
	if (tty < 0)
		return read_password_stdin();
	struct termios old, quiet;
	bool restore = tcgetattr(tty, &old) == 0;
	if (restore) {
		quiet = old;
		quiet.c_lflag &= (tcflag_t)~(ECHO | ECHONL);
		tcsetattr(tty, TCSAFLUSH, &quiet);
	}
	pw = read_password_fd(tty);
	if (restore) {
		tcsetattr(tty, TCSAFLUSH, &old);
		if (write(tty, "\n", 1) < 0) {
			/* nothing to do */
		}
	}
	close(tty);
	return pw;
}

static char *sasl_get_password(void *rock UNUSED)
{
	return prompt_password("Password: ", stdout);
}

/* True if word occurs in the space-separated list, ignoring case. */
static bool has_word(const char *list, const char *word)
{
	size_t wl = strlen(word);
	const char *p = list;
	while (*p) {
		while (*p == ' ')
			p++;
		const char *s = p;
		while (*p && *p != ' ')
			p++;
		if ((size_t)(p - s) == wl && !strncasecmp(s, word, wl))
			return true;
	}
	return false;
}

/* Perl's /(\b|^)MECH($|\b)/i test of the requested mechanism(s). */
static bool mech_offered(const char *avail, const char *mech)
{
	if (!*mech)
		return true;
	const char *p = avail;
	size_t ml = strlen(mech);
	while ((p = strcasestr(p, mech))) {
		bool left = p == avail || p[-1] == ' ';
		bool right = !p[ml] || p[ml] == ' ';
		if (left && right)
			return true;
		p++;
	}
	return false;
}

static const char *default_user(void)
{
	const char *u = getenv("USER");
	if (!u || !*u)
		u = getenv("LOGNAME");
	if (!u || !*u) {
		struct passwd *pw = getpwuid(getuid());
		u = pw ? pw->pw_name : "nobody";
	}
	return u;
}

void cyradm_print_failure(FILE *errf, const struct error *err,
		     const struct cyradm_auth *a)
{
	fprintf(errf, "cyradm: %s\n", err->msg);
	if (err->kind == ERR_PERM && !(a && (a->cafile || a->capath)))
		fputs("cyradm: name the CA that signed it with --cafile FILE "
		      "or --cadir DIR\n", errf);
}

static int do_starttls(struct cyradm_conn *c, const struct cyradm_auth *a,
		       FILE *errf)
{
	struct tls_opts tls = { 0 };
	struct error err = ERROR_INIT;
	tls.cafile = a->cafile;
	tls.capath = a->capath;
	if (a->tlskey && *a->tlskey) {
		tls.certfile = a->tlskey;
		tls.keyfile = a->tlskey;
	}
	int r = imapclient_starttls(c->ic, &tls, NULL, &err);
	if (r < 0) {
		cyradm_print_failure(errf, &err, a);
		return -1;
	}
	return r == IMAP_OK ? 0 : -1;
}

bool cyradm_authenticate(struct cyradm_conn *c, const struct cyradm_auth *a,
			 FILE *errf)
{
	struct error err = ERROR_INIT;
	struct buf text = BUF_INIT;
	char *typed = NULL, *mech;
	bool ok = false, starttls, logindisabled;
	const char *user = a->user ? a->user : default_user();

	if (a != &c->auth) {
		cyradm_auth_release(&c->auth);
		cyradm_auth_copy(&c->auth, a);
	}
	/* Straight after connect the capabilities are known: one round
	 * trip less at startup. */
	if (!c->caps_fresh && imapclient_capability(c->ic, &err) < 0)
		goto out;
	c->caps_fresh = false;
	starttls = imapclient_has_cap(c->ic, "STARTTLS");
	logindisabled = imapclient_has_cap(c->ic, "LOGINDISABLED");
	mech = xstrdup(a->mech ? a->mech : imapclient_auth_mechs(c->ic));

	/*
	 * STARTTLS when a client key is given or the mechanism cannot be
	 * used in the clear, as Cyrus::IMAP does; unlike it, also whenever
	 * the server disables plaintext logins and offers STARTTLS.
	 */
	bool need_tls = a->tlskey_set ||
		(logindisabled && !mech_offered(imapclient_auth_mechs(c->ic),
						mech)) ||
		(logindisabled && starttls && !a->notls);
	if (need_tls && !imapclient_tls_active(c->ic) &&
	    !(a->notls && !a->tlskey_set)) {
		if (!starttls) {
			fputs(logindisabled ? "Login disabled.\n" :
			      "TLS disabled.\n", errf);
			free(mech);
			goto out;
		}
		if (do_starttls(c, a, errf) < 0) {
			free(mech);
			goto out;
		}
		logindisabled = imapclient_has_cap(c->ic, "LOGINDISABLED");
		if (!*mech) {
			free(mech);
			mech = xstrdup(imapclient_auth_mechs(c->ic));
		}
	}

	int r = IMAP_NO;
	c->tried_login = true;
	/* Cyrus::IMAP does not authenticate twice: it just says yes. */
	if (c->authenticated)
		r = IMAP_OK;
	else if (strcasecmp(mech, "login")) {
		struct saslclient_opts so = {
			.service = a->service ? a->service : "imap",
			.user = user,
			.authz = a->authz ? a->authz : "",
			.password = a->password,
			.minssf = a->minssf,
			.maxssf = a->maxssf ? a->maxssf : 10000,
			.get_password = sasl_get_password,
		};
		r = imapclient_authenticate(c->ic, &so, *mech ? mech : NULL,
					    &text, &typed, &err);
		if (r < 0) {
			fprintf(errf, "%s\n", err.msg);
			free(mech);
			goto out;
		}
	}
	if (r != IMAP_OK && logindisabled && !imapclient_tls_active(c->ic)) {
		if (do_starttls(c, a, errf) < 0) {
			free(mech);
			goto out;
		}
		if (!*mech) {
			free(mech);
			mech = xstrdup(imapclient_auth_mechs(c->ic));
		}
	}
	if (!*mech) {
		free(mech);
		mech = xstrdup("plain");
	}
	if (r != IMAP_OK && (has_word(mech, "plain") || has_word(mech, "login") ||
			     mech_offered(mech, "plain") ||
			     mech_offered(mech, "login"))) {
		/* Cyrus::IMAP asks again: what was typed for SASL is not
		 * its -password. */
		char *pw = a->password ? xstrdup(a->password) : NULL;
		if (!pw) {
			pw = prompt_password("IMAP Password: ", stderr);
			c->login_prompted = true;
		}
		r = imapclient_run(c->ic, NULL, NULL, &text, &err, "LOGIN %s %s",
				   user, pw);
		explicit_bzero(pw, strlen(pw));
		free(pw);
		if (r < 0) {
			fprintf(errf, "%s\n", err.msg);
		} else if (r != IMAP_OK) {
			fprintf(errf, "%s\n", text.s);
		} else {
			imapclient_capability(c->ic, &err);
		}
	}
	free(mech);
	if (r == IMAP_OK && c->referrals) {
		r = imapclient_run(c->ic, NULL, NULL, NULL, &err,
				   "RLIST \"\" \"\"");
	}
	ok = r == IMAP_OK;
	if (ok)
		c->authenticated = true;
	if (ok && typed && !c->auth.password)
		c->auth.password = xstrdup(typed);
out:
	if (typed) {
		explicit_bzero(typed, strlen(typed));
		free(typed);
	}
	buf_release(&text);
	return ok;
}
