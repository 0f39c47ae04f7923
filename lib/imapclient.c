#include "compat.h"
#include "imapclient.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "xmalloc.h"

struct imapclient {
	int fd;
	bool dead;
	char *host;
	char *greeting;
	char *bye;            /* the text of a BYE, for the error at EOF */
	char *sasl_host;      /* the host's canonical name, for SASL */
	struct saslclient *layer; /* a SASL security layer, once negotiated */
	struct tls_conn *tls;
	struct imapparse parser;
	struct imap_reply reply;
	struct buf caps;      /* " CAP1 CAP2 ... " upper-cased, for has_cap */
	struct buf mechs;     /* "PLAIN LOGIN ..." */
	unsigned long tagno;
	/* Commands sent ahead (imapclient_send_ahead), oldest first. */
	struct ahead {
		unsigned long tag;
		char *body;
		size_t len;
	} *ahead;
	size_t nahead, ahead_alloc, ahead_bytes;
	bool ahead_failed;
	/* Between cork and uncork: commands sent ahead wait here, to go out
	 * in one write; ahead[cork_from..] are theirs. */
	bool corked;
	struct buf cork;
	size_t cork_from;
	char local[NI_MAXHOST + NI_MAXSERV + 2], remote[NI_MAXHOST + NI_MAXSERV + 2];
};

static void set_caps(struct imapclient *ic, const char *text, size_t len)
{
	buf_reset(&ic->caps);
	buf_reset(&ic->mechs);
	buf_addch(&ic->caps, ' ');
	size_t i = 0;
	while (i < len) {
		while (i < len && text[i] == ' ')
			i++;
		size_t start = i;
		while (i < len && text[i] != ' ' && text[i] != ']')
			i++;
		if (i == start)
			break;
		for (size_t j = start; j < i; j++)
			buf_addch(&ic->caps, toupper((unsigned char)text[j]));
		buf_addch(&ic->caps, ' ');
		if (i - start > 5 && !strncasecmp(text + start, "AUTH=", 5)) {
			if (ic->mechs.len)
				buf_addch(&ic->mechs, ' ');
			buf_add(&ic->mechs, text + start + 5, i - start - 5);
		}
		if (i < len && text[i] == ']')
			break;
	}
}

/* Picks up "[CAPABILITY ...]" at the start of a response text. */
static void note_capability_code(struct imapclient *ic, const char *text,
				 size_t len)
{
	if (len > 12 && !strncasecmp(text, "[CAPABILITY ", 12))
		set_caps(ic, text + 12, len - 12);
}

bool imapclient_has_cap(const struct imapclient *ic, const char *cap)
{
	char want[128];
	size_t n = strlen(cap);
	if (n + 3 > sizeof(want))
		return false;
	want[0] = ' ';
	for (size_t i = 0; i < n; i++)
		want[i + 1] = (char)toupper((unsigned char)cap[i]);
	want[n + 1] = ' ';
	want[n + 2] = '\0';
	return strstr(ic->caps.s, want) != NULL;
}

const char *imapclient_auth_mechs(const struct imapclient *ic)
{
	return ic->mechs.s;
}

bool imapclient_alive(const struct imapclient *ic)
{
	return ic && !ic->dead;
}

const char *imapclient_host(const struct imapclient *ic)
{
	return ic->host;
}

const char *imapclient_canonical_host(const struct imapclient *ic)
{
	return ic->sasl_host ? ic->sasl_host : ic->host;
}

const char *imapclient_greeting(const struct imapclient *ic)
{
	return ic->greeting ? ic->greeting : "";
}

bool imapclient_tls_active(const struct imapclient *ic)
{
	return ic->tls != NULL;
}

static int die_conn(struct imapclient *ic)
{
	ic->dead = true;
	return -1;
}

static int write_raw(struct imapclient *ic, const char *data, size_t len,
		     struct error *err);

static int write_all(struct imapclient *ic, const char *data, size_t len,
		     struct error *err)
{
	if (ic->dead)
		return error_set(err, ERR_IO, "connection to server lost");
	if (!ic->layer)
		return write_raw(ic, data, len, err);
	unsigned max = saslclient_maxout(ic->layer);
	while (len) {
		unsigned piece = len < max ? (unsigned)len : max, outlen;
		const char *out;
		if (saslclient_encode(ic->layer, data, piece, &out, &outlen,
				      err) < 0 ||
		    write_raw(ic, out, outlen, err) < 0)
			return die_conn(ic);
		data += piece;
		len -= piece;
	}
	return 0;
}

static int write_raw(struct imapclient *ic, const char *data, size_t len,
		     struct error *err)
{
	if (ic->tls) {
		if (tls_write(ic->tls, data, len, err) < 0)
			return die_conn(ic);
		return 0;
	}
	while (len) {
		ssize_t n = send(ic->fd, data, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			error_sys(err, ERR_IO, errno, "cannot send to server");
			return die_conn(ic);
		}
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads the next response into ic->reply; 0, or -1 with err. */
static int read_reply(struct imapclient *ic, struct error *err)
{
	char chunk[16384];
	for (;;) {
		int r = imapparse_next(&ic->parser, &ic->reply, err);
		if (r > 0)
			return 0;
		if (r < 0)
			return die_conn(ic);
		ssize_t n;
		if (ic->tls) {
			n = tls_read(ic->tls, chunk, sizeof(chunk), err);
			if (n < 0)
				return die_conn(ic);
		} else {
			n = read(ic->fd, chunk, sizeof(chunk));
			if (n < 0 && errno == EINTR)
				continue;
			/* A server that closed while pipelined commands were
			 * still on their way answers them with a reset: that
			 * is the same end of the connection. */
			if (n < 0 && errno == ECONNRESET)
				n = 0;
			if (n < 0) {
				error_sys(err, ERR_IO, errno,
					  "cannot read from server");
				return die_conn(ic);
			}
		}
		if (n == 0) {
			if (imapparse_pending(&ic->parser))
				error_set(err, ERR_UNAVAILABLE,
					  "connection closed by server in the "
					  "middle of a response");
			else if (ic->bye)
				error_set(err, ERR_UNAVAILABLE,
					  "connection closed by server: %s",
					  ic->bye);
			else
				error_set(err, ERR_UNAVAILABLE,
					  "connection closed by server");
			return die_conn(ic);
		}
		if (ic->layer) {
			const char *out;
			unsigned outlen;
			if (saslclient_decode(ic->layer, chunk, (unsigned)n,
					      &out, &outlen, err) < 0)
				return die_conn(ic);
			imapparse_feed(&ic->parser, out, outlen);
			continue;
		}
		imapparse_feed(&ic->parser, chunk, (size_t)n);
	}
}

static void fill_addr(int fd, bool peer, char *out, size_t outlen)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char h[NI_MAXHOST], s[NI_MAXSERV];
	out[0] = '\0';
	if ((peer ? getpeername(fd, (struct sockaddr *)&ss, &sl) :
	     getsockname(fd, (struct sockaddr *)&ss, &sl)) < 0)
		return;
	if (getnameinfo((struct sockaddr *)&ss, sl, h, sizeof(h), s, sizeof(s),
			NI_NUMERICHOST | NI_NUMERICSERV) != 0)
		return;
	snprintf(out, outlen, "%s;%s", h, s);
}

static struct imapclient *new_client(const char *host)
{
	struct imapclient *ic = xzmalloc(sizeof(*ic));
	ic->fd = -1;
	ic->host = xstrdup(host);
	imapparse_init(&ic->parser, NULL);
	imap_reply_init(&ic->reply);
	buf_init(&ic->caps);
	buf_init(&ic->mechs);
	buf_init(&ic->cork);
	return ic;
}

static void free_client(struct imapclient *ic)
{
	for (size_t i = 0; i < ic->nahead; i++)
		free(ic->ahead[i].body);
	free(ic->ahead);
	tls_close(&ic->tls);
	if (ic->fd >= 0)
		close(ic->fd);
	imapparse_release(&ic->parser);
	imap_reply_release(&ic->reply);
	buf_release(&ic->caps);
	buf_release(&ic->mechs);
	buf_release(&ic->cork);
	saslclient_free(&ic->layer);
	free(ic->host);
	free(ic->sasl_host);
	free(ic->greeting);
	free(ic->bye);
	free(ic);
}

/* Splits "name:port", "[v6]:port" and "[v6]"; returns malloc'd host. */
static char *split_host(const char *host, const char **port, char *portbuf,
			size_t portlen)
{
	const char *colon;
	if (host[0] == '[') {
		const char *close = strchr(host, ']');
		if (close) {
			if (close[1] == ':' && close[2]) {
				snprintf(portbuf, portlen, "%s", close + 2);
				*port = portbuf;
			}
			return xstrndup(host + 1, (size_t)(close - host - 1));
		}
	}
	colon = strchr(host, ':');
	if (colon && !strchr(colon + 1, ':') && colon[1]) {
		snprintf(portbuf, portlen, "%s", colon + 1);
		*port = portbuf;
		return xstrndup(host, (size_t)(colon - host));
	}
	return xstrdup(host);
}

int imapclient_connect(const char *host, const char *port,
		       const struct tls_opts *tls, struct imapclient **ic_r,
		       struct error *err)
{
	struct addrinfo hints, *res = NULL, *ai;
	char portbuf[64];
	const char *hostport = NULL;
	int fd = -1, last_errno = 0, r;
	char *name = split_host(host, &hostport, portbuf, sizeof(portbuf));

	if (hostport)
		port = hostport;
	if (!port || !*port)
		port = tls ? "993" : "143";
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	/* The canonical name is the one SASL gets, as imclient gives it
	 * (GSSAPI's service principal); TLS checks the name as typed. */
	hints.ai_flags = AI_ADDRCONFIG | AI_CANONNAME;
	r = getaddrinfo(name, port, &hints, &res);
	if (r == EAI_ADDRFAMILY || r == EAI_NONAME) {
		hints.ai_flags = AI_CANONNAME;
		r = getaddrinfo(name, port, &hints, &res);
	}
	if (r != 0) {
		/* imclient's words; a bad port is reported the same way. */
		error_set(err, ERR_NOUSER, "unknown host \"%s\"", name);
		free(name);
		errno = 0;
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
			    ai->ai_protocol);
		if (fd < 0) {
			last_errno = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		last_errno = errno;
		close(fd);
		fd = -1;
	}
	char *canon = xstrdup(res->ai_canonname ? res->ai_canonname : name);
	freeaddrinfo(res);
	if (fd < 0) {
		error_sys(err, ERR_UNAVAILABLE, last_errno,
			  "cannot connect to %s port %s", name, port);
		free(name);
		free(canon);
		errno = last_errno;
		return -1;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

	struct imapclient *ic = new_client(host);
	ic->fd = fd;
	fill_addr(fd, false, ic->local, sizeof(ic->local));
	fill_addr(fd, true, ic->remote, sizeof(ic->remote));
	free(ic->host);
	ic->host = name;
	ic->sasl_host = canon;

	/*
	 * The server takes a while to greet (imapd starts up); load the SASL
	 * plugins meanwhile, which authenticating needs anyway. A failure
	 * shows again, and is reported, when authenticating.
	 */
	if (!tls) {
		struct error serr = ERROR_INIT;
		saslclient_init(&serr);
	}
	if (tls && tls_start(fd, name, tls, &ic->tls, err) < 0)
		goto fail;
	if (read_reply(ic, err) < 0)
		goto fail;
	if (ic->reply.kind != IMAP_REPLY_UNTAGGED ||
	    (strcasecmp(ic->reply.keyword, "OK") &&
	     strcasecmp(ic->reply.keyword, "PREAUTH"))) {
		error_set(err, ERR_UNAVAILABLE, "server refused the connection: "
			  "%s %s", ic->reply.keyword, ic->reply.text);
		goto fail;
	}
	ic->greeting = xstrndup(ic->reply.text, ic->reply.textlen);
	note_capability_code(ic, ic->reply.text, ic->reply.textlen);
	*ic_r = ic;
	return 0;
fail:
	free_client(ic);
	errno = 0;
	return -1;
}

void imapclient_abandon(struct imapclient **icp)
{
	if (!*icp)
		return;
	free_client(*icp);
	*icp = NULL;
}

void imapclient_close(struct imapclient **icp)
{
	struct imapclient *ic = *icp;
	if (!ic)
		return;
	if (!ic->dead) {
		struct error err = ERROR_INIT;
		imapclient_run(ic, NULL, NULL, NULL, &err, "LOGOUT");
	}
	imapclient_abandon(icp);
}

/* 0: atom, 1: needs quotes, 2: needs a literal (Cyrus::IMAP's rules). */
static int string_class(const char *s, size_t len)
{
	int cls = 0;
	if (len >= 1024)
		return 2;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == 0 || c == '\n' || c == '\r' || c == '"' || c == '\\' ||
		    c >= 128)
			return 2;
		if (c < 33 || c == '%' || c == '(' || c == ')' || c == '*' ||
		    c == '{')
			cls = 1;
	}
	return cls;
}

/* Literal markers are "{N+}\r\n" or, for a synchronizing one, "{N}\r\n". */
static void add_literal(struct imapclient *ic, struct buf *out, const char *s,
			size_t len)
{
	if (ic && imapclient_has_cap(ic, "LITERAL+"))
		buf_printf(out, "{%zu+}\r\n", len);
	else
		buf_printf(out, "{%zu}\r\n", len);
	buf_add(out, s, len);
}

void imapclient_add_astring(struct imapclient *ic, struct buf *out,
			    const char *s, size_t len)
{
	int cls = string_class(s, len);
	if (cls == 0 && len)
		buf_add(out, s, len);
	else if (cls < 2) {
		buf_addch(out, '"');
		buf_add(out, s, len);
		buf_addch(out, '"');
	} else
		add_literal(ic, out, s, len);
}

void imapclient_add_qstring(struct imapclient *ic, struct buf *out,
			    const char *s, size_t len)
{
	if (string_class(s, len) < 2) {
		buf_addch(out, '"');
		buf_add(out, s, len);
		buf_addch(out, '"');
	} else
		add_literal(ic, out, s, len);
}

void imapclient_vfmt(struct imapclient *ic, struct buf *out, const char *fmt,
		     va_list ap)
{
	for (const char *p = fmt; *p; p++) {
		if (*p != '%' || !p[1]) {
			buf_addch(out, *p);
			continue;
		}
		const char *s;
		switch (*++p) {
		case 'a':
			s = va_arg(ap, const char *);
			buf_adds(out, s ? s : "");
			break;
		case 's':
			s = va_arg(ap, const char *);
			s = s ? s : "";
			imapclient_add_astring(ic, out, s, strlen(s));
			break;
		case 'q':
			s = va_arg(ap, const char *);
			s = s ? s : "";
			imapclient_add_qstring(ic, out, s, strlen(s));
			break;
		case 'd':
			buf_printf(out, "%d", va_arg(ap, int));
			break;
		case 'u':
			buf_printf(out, "%u", va_arg(ap, unsigned));
			break;
		default:
			buf_addch(out, *p);
			break;
		}
	}
}

static void dispatch_untagged(struct imapclient *ic, imapclient_untagged_fn *cb,
			      void *rock)
{
	struct imap_reply *r = &ic->reply;
	if (!strcasecmp(r->keyword, "CAPABILITY"))
		set_caps(ic, r->text, r->textlen);
	else if (!strcasecmp(r->keyword, "OK"))
		note_capability_code(ic, r->text, r->textlen);
	if (cb)
		cb(r, rock);
}

static int tagged_status(struct imapclient *ic, struct buf *text_r)
{
	struct imap_reply *r = &ic->reply;
	if (text_r)
		buf_set(text_r, r->text, r->textlen);
	if (!strcasecmp(r->keyword, "OK")) {
		note_capability_code(ic, r->text, r->textlen);
		return IMAP_OK;
	}
	return !strcasecmp(r->keyword, "NO") ? IMAP_NO : IMAP_BAD;
}

/*
 * Waits for the tagged response to tag, handing untagged ones to cb.
 * With want_cont, a continuation request ends the wait too (returns 3).
 */
static int wait_tagged(struct imapclient *ic, const char *tag, bool want_cont,
		       imapclient_untagged_fn *cb, void *rock,
		       struct buf *text_r, struct error *err)
{
	for (;;) {
		if (read_reply(ic, err) < 0)
			return -1;
		switch (ic->reply.kind) {
		case IMAP_REPLY_UNTAGGED:
			dispatch_untagged(ic, cb, rock);
			if (!strcasecmp(ic->reply.keyword, "BYE")) {
				/* Kept to say why when the close follows. */
				free(ic->bye);
				ic->bye = xstrndup(ic->reply.text,
						   ic->reply.textlen);
			}
			break;
		case IMAP_REPLY_CONTINUATION:
			if (want_cont)
				return 3;
			error_set(err, ERR_PROTOCOL,
				  "unexpected continuation request from server");
			return die_conn(ic);
		case IMAP_REPLY_TAGGED:
			if (!strcmp(ic->reply.tag, tag))
				return tagged_status(ic, text_r);
			/* A stray tag: not ours, ignore like imclient does. */
			break;
		}
	}
}

/* Drops the oldest command sent ahead. */
static void pop_ahead(struct imapclient *ic)
{
	ic->ahead_bytes -= ic->ahead[0].len;
	free(ic->ahead[0].body);
	memmove(ic->ahead, ic->ahead + 1, --ic->nahead * sizeof(*ic->ahead));
}

/*
 * Waits for the answers to every command sent ahead, throwing them away:
 * before a command that was not sent ahead goes out, so that the server
 * sees the commands in the order they are run. The shell sends ahead only
 * what it runs next, so this is for mistakes and LOGOUT.
 */
static int drain_ahead(struct imapclient *ic, struct error *err)
{
	while (ic->nahead) {
		char tag[32];
		snprintf(tag, sizeof(tag), "%lu", ic->ahead[0].tag);
		pop_ahead(ic);
		if (wait_tagged(ic, tag, false, NULL, NULL, NULL, err) < 0)
			return -1;
	}
	return 0;
}

/* True if the command s[0..len) has a synchronizing literal. */
static bool has_sync_literal(const char *s, size_t len)
{
	size_t start = 0, litstart;
	for (size_t i = 0; i + 1 < len; i++) {
		if (s[i] != '\r' || s[i + 1] != '\n')
			continue;
		long long n = imapparse_literal_suffix(s + start, i - start,
						       &litstart);
		if (n < 0)
			continue;
		if (s[i - 2] != '+')
			return true;
		i += 1 + (size_t)n;
		start = i + 1;
	}
	return false;
}

int imapclient_vsend_ahead(struct imapclient *ic, struct error *err,
			   const char *fmt, va_list ap)
{
	struct buf body = BUF_INIT, cmd = BUF_INIT;
	int r = 1;

	if (ic->dead || ic->ahead_failed ||
	    ic->nahead >= IMAPCLIENT_AHEAD_MAX)
		return 1;
	imapclient_vfmt(ic, &body, fmt, ap);
	buf_printf(&cmd, "%lu ", ic->tagno + 1);
	buf_add(&cmd, body.s, body.len);
	buf_adds(&cmd, "\r\n");
	if (has_sync_literal(cmd.s, cmd.len) ||
	    ic->ahead_bytes + body.len > IMAPCLIENT_AHEAD_BYTES)
		goto out;
	if (ic->corked)
		buf_add(&ic->cork, cmd.s, cmd.len);
	else if (write_all(ic, cmd.s, cmd.len, err) < 0) {
		/*
		 * Not dead yet: the answers to what went before may be
		 * waiting to be read. The command is sent again when it is
		 * run, and fails then as it would have without us.
		 */
		ic->dead = false;
		ic->ahead_failed = true;
		r = -1;
		goto out;
	}
	if (ic->nahead == ic->ahead_alloc) {
		ic->ahead_alloc = ic->ahead_alloc * 2 + 8;
		ic->ahead = xrealloc(ic->ahead,
				     ic->ahead_alloc * sizeof(*ic->ahead));
	}
	ic->ahead[ic->nahead].tag = ++ic->tagno;
	ic->ahead_bytes += body.len;
	ic->ahead[ic->nahead].body = buf_detach(&body,
						&ic->ahead[ic->nahead].len);
	ic->nahead++;
	r = 0;
out:
	buf_release(&body);
	buf_release(&cmd);
	return r;
}

int imapclient_send_ahead(struct imapclient *ic, struct error *err,
			  const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = imapclient_vsend_ahead(ic, err, fmt, ap);
	va_end(ap);
	return r;
}

size_t imapclient_ahead(const struct imapclient *ic)
{
	return ic ? ic->nahead : 0;
}

void imapclient_cork(struct imapclient *ic)
{
	if (ic->corked)
		return;
	ic->corked = true;
	ic->cork_from = ic->nahead;
	buf_reset(&ic->cork);
}

int imapclient_uncork(struct imapclient *ic, struct error *err)
{
	if (!ic->corked)
		return 0;
	ic->corked = false;
	if (!ic->cork.len || write_all(ic, ic->cork.s, ic->cork.len, err) == 0) {
		buf_reset(&ic->cork);
		return 0;
	}
	/*
	 * None of them went out (or not whole): forget them, as if never
	 * sent ahead; each is sent again when it is run, and fails then as
	 * it would have without us. The answers before may still be read.
	 */
	while (ic->nahead > ic->cork_from) {
		struct ahead *a = &ic->ahead[--ic->nahead];
		ic->ahead_bytes -= a->len;
		free(a->body);
		ic->tagno--;
	}
	buf_reset(&ic->cork);
	ic->dead = false;
	ic->ahead_failed = true;
	return -1;
}

int imapclient_vrun(struct imapclient *ic, imapclient_untagged_fn *cb,
		    void *rock, struct buf *text_r, struct error *err,
		    const char *fmt, va_list ap)
{
	struct buf cmd = BUF_INIT, body = BUF_INIT;
	char tag[32];
	int r;

	if (ic->corked && imapclient_uncork(ic, err) < 0)
		error_clear(err);   /* as for a failed send ahead, above */
	if (ic->dead)
		return error_set(err, ERR_IO, "connection to server lost");
	imapclient_vfmt(ic, &body, fmt, ap);
	if (ic->nahead && ic->ahead[0].len == body.len &&
	    !memcmp(ic->ahead[0].body, body.s, body.len)) {
		/* Sent ahead: only the answer is left to read. */
		snprintf(tag, sizeof(tag), "%lu", ic->ahead[0].tag);
		pop_ahead(ic);
		buf_release(&body);
		return wait_tagged(ic, tag, false, cb, rock, text_r, err);
	}
	if (drain_ahead(ic, err) < 0) {
		buf_release(&body);
		return -1;
	}
	snprintf(tag, sizeof(tag), "%lu", ++ic->tagno);
	buf_adds(&cmd, tag);
	buf_addch(&cmd, ' ');
	buf_add(&cmd, body.s, body.len);
	buf_release(&body);
	buf_adds(&cmd, "\r\n");

	/* Send up to each synchronizing literal, then wait for "+". */
	size_t start = 0, scan = 0;
	for (;;) {
		size_t i, cut = cmd.len, litstart;
		for (i = scan; i + 1 < cmd.len; i++) {
			if (cmd.s[i] != '\r' || cmd.s[i + 1] != '\n')
				continue;
			long long n = imapparse_literal_suffix(cmd.s + start,
							       i - start,
							       &litstart);
			if (n < 0)
				continue;
			if (cmd.s[i - 2] != '+') {
				cut = i + 2;
				scan = cut + (size_t)n;
				break;
			}
			i += 1 + (size_t)n;
		}
		if (write_all(ic, cmd.s + start, cut - start, err) < 0) {
			r = -1;
			goto out;
		}
		if (cut >= cmd.len)
			break;
		r = wait_tagged(ic, tag, true, cb, rock, text_r, err);
		if (r != 3)
			goto out;
		start = cut;
	}
	r = wait_tagged(ic, tag, false, cb, rock, text_r, err);
out:
	buf_release(&cmd);
	return r;
}

int imapclient_run(struct imapclient *ic, imapclient_untagged_fn *cb,
		   void *rock, struct buf *text_r, struct error *err,
		   const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = imapclient_vrun(ic, cb, rock, text_r, err, fmt, ap);
	va_end(ap);
	return r;
}

int imapclient_capability(struct imapclient *ic, struct error *err)
{
	int r = imapclient_run(ic, NULL, NULL, NULL, err, "CAPABILITY");
	return r < 0 ? -1 : r;
}

int imapclient_starttls(struct imapclient *ic, const struct tls_opts *tls,
			struct buf *text_r, struct error *err)
{
	int r = imapclient_run(ic, NULL, NULL, text_r, err, "STARTTLS");
	if (r != IMAP_OK)
		return r;
	if (imapparse_pending(&ic->parser)) {
		error_set(err, ERR_PROTOCOL,
			  "server sent data after STARTTLS (possible attack)");
		return die_conn(ic);
	}
	if (tls_start(ic->fd, ic->host, tls, &ic->tls, err) < 0)
		return die_conn(ic);
	buf_reset(&ic->caps);
	buf_reset(&ic->mechs);
	return imapclient_capability(ic, err);
}

/* Removes word from the space-separated list in b. */
static void remove_word(struct buf *b, const char *word)
{
	struct buf out = BUF_INIT;
	const char *p = b->s;
	size_t wl = strlen(word);
	while (*p) {
		while (*p == ' ')
			p++;
		const char *s = p;
		while (*p && *p != ' ')
			p++;
		if (p == s)
			break;
		if ((size_t)(p - s) == wl && !strncasecmp(s, word, wl))
			continue;
		if (out.len)
			buf_addch(&out, ' ');
		buf_add(&out, s, (size_t)(p - s));
	}
	buf_release(b);
	*b = out;
}

/* One AUTHENTICATE exchange; IMAP_OK/NO/BAD, or -1 with err. */
static int auth_one(struct imapclient *ic, struct saslclient *sc,
		    const char *mechlist, const char **mech_r,
		    struct buf *text_r, struct error *err)
{
	const char *out;
	unsigned outlen;
	struct buf line = BUF_INIT;
	char tag[32];
	int r;
	char *b64;

	if (drain_ahead(ic, err) < 0)
		return -1;
	if (saslclient_start(sc, mechlist, mech_r, &out, &outlen, err) < 0)
		return -2;
	snprintf(tag, sizeof(tag), "%lu", ++ic->tagno);
	buf_printf(&line, "%s AUTHENTICATE %s", tag, *mech_r);
	if (out && imapclient_has_cap(ic, "SASL-IR")) {
		saslclient_b64_encode(out, outlen, &b64);
		buf_printf(&line, " %s", *b64 ? b64 : "=");
		free(b64);
	}
	buf_adds(&line, "\r\n");
	if (write_all(ic, line.s, line.len, err) < 0) {
		r = -1;
		goto out;
	}
	for (;;) {
		r = wait_tagged(ic, tag, true, NULL, NULL, text_r, err);
		if (r != 3)
			goto out;
		char *in = NULL;
		unsigned inlen = 0;
		struct error serr = ERROR_INIT;
		buf_reset(&line);
		if (saslclient_b64_decode(ic->reply.text, ic->reply.textlen,
					  &in, &inlen) < 0 ||
		    saslclient_step(sc, in, inlen, &out, &outlen, &serr) < 0) {
			/* Cancel; the server answers BAD. */
			free(in);
			if (write_all(ic, "*\r\n", 3, err) < 0) {
				r = -1;
				goto out;
			}
			continue;
		}
		free(in);
		saslclient_b64_encode(out ? out : "", out ? outlen : 0, &b64);
		buf_printf(&line, "%s\r\n", b64);
		free(b64);
		if (write_all(ic, line.s, line.len, err) < 0) {
			r = -1;
			goto out;
		}
	}
out:
	buf_release(&line);
	return r;
}

int imapclient_authenticate(struct imapclient *ic,
			    const struct saslclient_opts *opts,
			    const char *mechs, struct buf *text_r,
			    char **password_r, struct error *err)
{
	struct buf list = BUF_INIT;
	struct saslclient *sc = NULL;
	struct saslclient_opts o = *opts;
	char *typed = NULL;
	int r = IMAP_NO;

	buf_sets(&list, mechs ? mechs : imapclient_auth_mechs(ic));
	if (text_r)
		buf_reset(text_r);
	while (list.len) {
		const char *mech = NULL;
		char *mechcopy;
		struct error serr = ERROR_INIT;

		/* A password typed once serves the next mechanisms too. */
		if (typed)
			o.password = typed;
		saslclient_free(&sc);
		if (saslclient_new(&o, ic->sasl_host ? ic->sasl_host : ic->host,
				   ic->local[0] ? ic->local : NULL,
				   ic->remote[0] ? ic->remote : NULL,
				   ic->tls ? (unsigned)tls_ssf(ic->tls) : 0,
				   &sc, err) < 0) {
			r = -1;
			goto out;
		}
		r = auth_one(ic, sc, list.s, &mech, text_r, &serr);
		if (!typed && !opts->password && saslclient_password(sc))
			typed = xstrdup(saslclient_password(sc));
		if (r == -2) {
			/* No usable mechanism left on our side; or one that
			 * failed to start (GSSAPI without a ticket): that one
			 * is dropped and the next tried, as imclient does. */
			if (text_r && !text_r->len)
				buf_sets(text_r, serr.msg);
			r = IMAP_NO;
			if (!mech)
				break;
		} else if (r < 0) {
			*err = serr;
			goto out;
		}
		if (r == IMAP_OK) {
			/* A security layer wraps everything from now on. */
			if (saslclient_ssf(sc) > 0) {
				ic->layer = sc;
				sc = NULL;
			}
			break;
		}
		mechcopy = xstrdup(mech);
		remove_word(&list, mechcopy);
		free(mechcopy);
		r = IMAP_NO;
	}
	if (r == IMAP_OK && !(text_r && !strncasecmp(text_r->s,
						       "[CAPABILITY ", 12)))
		imapclient_capability(ic, err);
out:
	saslclient_free(&sc);
	buf_release(&list);
	if (password_r)
		*password_r = typed;
	else if (typed) {
		explicit_bzero(typed, strlen(typed));
		free(typed);
	}
	return r;
}
