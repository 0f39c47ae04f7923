/*
 * test-imapclient.c: the IMAP response reader against good, garbage,
 * truncated and oversized input (no crash, a clear error), the tokenizer,
 * command formatting, a connection to a scripted server that goes away, and
 * commands sent ahead (pipelining) to a server that echoes them.
 */
#include "harness.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "imapclient.h"
#include "imapparse.h"

static int feed_all(struct imapparse *p, const char *s, struct imap_reply *r,
		    struct error *err)
{
	imapparse_feed(p, s, strlen(s));
	return imapparse_next(p, r, err);
}

static void test_untagged_and_tagged(void)
{
	struct imapparse p;
	struct imap_reply r;
	struct error err = ERROR_INIT;

	test_begin("imapparse: untagged, numbered, continuation, tagged");
	imapparse_init(&p, NULL);
	imap_reply_init(&r);
	test_assert_int(feed_all(&p, "* LIST (\\HasChildren) \".\" user.bob\r\n",
				 &r, &err), 1);
	test_assert(r.kind == IMAP_REPLY_UNTAGGED);
	test_assert_str(r.keyword, "LIST");
	test_assert_str(r.text, "(\\HasChildren) \".\" user.bob");
	test_assert_int(r.msgno, -1);
	test_assert_int(feed_all(&p, "* 12 EXISTS\r\n+ go on\r\n", &r, &err), 1);
	test_assert_int(r.msgno, 12);
	test_assert_str(r.keyword, "EXISTS");
	test_assert_int(imapparse_next(&p, &r, &err), 1);
	test_assert(r.kind == IMAP_REPLY_CONTINUATION);
	test_assert_str(r.text, "go on");
	test_assert_int(feed_all(&p, "a1 NO [ALERT] Mailbox does not exist\n",
				 &r, &err), 1);
	test_assert(r.kind == IMAP_REPLY_TAGGED);
	test_assert_str(r.tag, "a1");
	test_assert_str(r.keyword, "NO");
	test_assert_str(r.text, "[ALERT] Mailbox does not exist");
	test_assert_int(imapparse_next(&p, &r, &err), 0);
	imap_reply_release(&r);
	imapparse_release(&p);
	test_end();
}

static void test_literal_split(void)
{
	struct imapparse p;
	struct imap_reply r;
	struct error err = ERROR_INIT;
	static const char in[] = "* LIST () \".\" {5}\r\nab\0de (x)\r\n";
	static const char want[] = "() \".\" {5}\r\nab\0de (x)";
	size_t len = sizeof(in) - 1;

	test_begin("imapparse: a literal with a NUL, fed a byte at a time");
	imapparse_init(&p, NULL);
	imap_reply_init(&r);
	int got = 0;
	for (size_t i = 0; i < len; i++) {
		imapparse_feed(&p, in + i, 1);
		int n = imapparse_next(&p, &r, &err);
		test_assert(n >= 0);
		if (n > 0) {
			got++;
			test_assert_idx(i == len - 1, i);
		}
	}
	test_assert_int(got, 1);
	test_assert_mem(r.text, r.textlen, want, sizeof(want) - 1);
	imap_reply_release(&r);
	imapparse_release(&p);
	test_end();
}

static void expect_error(const char *title, const char *input, size_t len,
			 const struct imapparse_limits *lim, const char *msg)
{
	struct imapparse p;
	struct imap_reply r;
	struct error err = ERROR_INIT;

	test_begin(title);
	imapparse_init(&p, lim);
	imap_reply_init(&r);
	imapparse_feed(&p, input, len ? len : strlen(input));
	int n;
	while ((n = imapparse_next(&p, &r, &err)) > 0)
		;
	test_assert_int(n, -1);
	test_assert(strstr(err.msg, msg) != NULL);
	if (!strstr(err.msg, msg))
		printf("# got: %s\n", err.msg);
	/* And it stays failed. */
	error_clear(&err);
	test_assert_int(imapparse_next(&p, &r, &err), -1);
	test_assert(err.msg[0] != '\0');
	imap_reply_release(&r);
	imapparse_release(&p);
	test_end();
}

static void test_garbage(void)
{
	static const struct imapparse_limits small = { 64, 100, 1000 };
	char big[300];

	expect_error("imapparse: empty line is garbage", "\r\n", 2, NULL,
		     "bad response from server");
	expect_error("imapparse: tag without keyword", "a1\r\n", 4, NULL,
		     "no keyword");
	expect_error("imapparse: tagged response that is not OK/NO/BAD",
		     "a1 MAYBE fine\r\n", 15, NULL, "not OK, NO or BAD");
	expect_error("imapparse: binary junk", "\x01\x02\xff junk\r\n", 10,
		     NULL, "bad response from server");
	expect_error("imapparse: NUL outside a literal", "* OK a\0b\r\n", 10,
		     NULL, "NUL byte");
	memset(big, 'x', sizeof(big));
	expect_error("imapparse: line longer than the limit", big, sizeof(big),
		     &small, "line too long");
	expect_error("imapparse: oversized literal", "* LIST () \".\" {101}\r\n",
		     21, &small, "exceeds the limit");
	expect_error("imapparse: huge literal size", "* X {99999999999999999999}\r\n",
		     28, NULL, "exceeds the limit");
	expect_error("imapparse: response of many literals over the limit",
		     "* X {90}\r\n" "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx {90}\r\n"
		     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx {90}\r\n"
		     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx {90}\r\n"
		     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx {90}\r\n"
		     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx {90}\r\n"
		     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx {90}\r\n"
		     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx {90}\r\n"
		     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx {90}\r\n"
		     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx {90}\r\n"
		     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
		     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx {90}\r\n",
		     0, &small, "too long");
	expect_error("imapparse: a response starting with a literal",
		     "{3}\r\nabc\r\n", 10, NULL, "bad response");
}

static void test_truncated(void)
{
	struct imapparse p;
	struct imap_reply r;
	struct error err = ERROR_INIT;

	test_begin("imapparse: truncated input waits, and says so");
	imapparse_init(&p, NULL);
	imap_reply_init(&r);
	test_assert_int(feed_all(&p, "* LIST () \".\" {10}\r\nabc", &r, &err), 0);
	test_assert(imapparse_pending(&p));
	test_assert_int(feed_all(&p, "* OK no newline", &r, &err), 0);
	imap_reply_release(&r);
	imapparse_release(&p);
	test_end();
}

/* Random bytes and random cuts of good responses: never a crash. */
static void test_fuzz(void)
{
	static const char *good[] = {
		"* LIST (\\Noselect) \"/\" {3}\r\nfoo\r\n",
		"* METADATA \"\" (\"/shared/comment\" {4}\r\nab\r\n)\r\n",
		"a OK [CAPABILITY IMAP4rev1 LITERAL+] done\r\n",
		"* 3 FETCH (BODY[] {0}\r\n)\r\n",
	};
	static const struct imapparse_limits small = { 200, 500, 2000 };
	unsigned seed = 12345;

	test_begin("imapparse: 20000 random inputs, no crash");
	for (int round = 0; round < 20000; round++) {
		struct imapparse p;
		struct imap_reply r;
		struct error err = ERROR_INIT;
		char in[600];
		size_t n = 0;

		imapparse_init(&p, &small);
		imap_reply_init(&r);
		seed = seed * 1103515245 + 12345;
		if (round % 2) {
			const char *g = good[(seed >> 8) % ARRAY_SIZE(good)];
			n = strlen(g);
			memcpy(in, g, n);
			/* flip a few bytes */
			for (int k = 0; k < 3; k++) {
				seed = seed * 1103515245 + 12345;
				in[(seed >> 4) % n] = (char)(seed >> 16);
			}
		} else {
			n = (seed >> 8) % sizeof(in);
			for (size_t i = 0; i < n; i++) {
				seed = seed * 1103515245 + 12345;
				in[i] = "* {}0123\r\n\"() abcOK+"[(seed >> 16) % 20];
			}
		}
		size_t pos = 0;
		while (pos < n) {
			seed = seed * 1103515245 + 12345;
			size_t k = 1 + (seed >> 8) % 50;
			if (k > n - pos)
				k = n - pos;
			imapparse_feed(&p, in + pos, k);
			pos += k;
			int rr;
			while ((rr = imapparse_next(&p, &r, &err)) > 0) {
				test_assert(r.tag != NULL && r.text != NULL);
				struct imap_tokenizer t;
				struct imap_token tok = { IMAP_TOK_END, BUF_INIT };
				imap_tokenizer_init(&t, r.text, r.textlen);
				for (int j = 0; j < 100; j++) {
					if (imap_tokenizer_next(&t, &tok, &err) < 0 ||
					    tok.kind == IMAP_TOK_END)
						break;
				}
				buf_release(&tok.value);
			}
			if (rr < 0) {
				test_assert(err.msg[0] != '\0');
				break;
			}
		}
		imap_reply_release(&r);
		imapparse_release(&p);
	}
	test_end();
}

static void test_tokenizer(void)
{
	struct imap_tokenizer t;
	struct imap_token tok = { IMAP_TOK_END, BUF_INIT };
	struct error err = ERROR_INIT;
	const char *s = "(\"a b\" NIL {3}\r\nx\"y \"q\\\"z\") atom";

	test_begin("tokenizer: lists, quoted, NIL, literal, atom, bad input");
	imap_tokenizer_init(&t, s, strlen(s));
	test_assert_int(imap_tokenizer_next(&t, &tok, &err), 0);
	test_assert(tok.kind == IMAP_TOK_LPAREN);
	imap_tokenizer_next(&t, &tok, &err);
	test_assert(tok.kind == IMAP_TOK_QUOTED);
	test_assert_str(tok.value.s, "a b");
	imap_tokenizer_next(&t, &tok, &err);
	test_assert(imap_token_is_nil(&tok));
	imap_tokenizer_next(&t, &tok, &err);
	test_assert(tok.kind == IMAP_TOK_LITERAL);
	test_assert_str(tok.value.s, "x\"y");
	imap_tokenizer_next(&t, &tok, &err);
	test_assert_str(tok.value.s, "q\"z");
	imap_tokenizer_next(&t, &tok, &err);
	test_assert(tok.kind == IMAP_TOK_RPAREN);
	imap_tokenizer_next(&t, &tok, &err);
	test_assert_str(tok.value.s, "atom");
	imap_tokenizer_next(&t, &tok, &err);
	test_assert(tok.kind == IMAP_TOK_END);

	imap_tokenizer_init(&t, "\"open", 5);
	test_assert_int(imap_tokenizer_next(&t, &tok, &err), -1);
	test_assert(strstr(err.msg, "unterminated") != NULL);
	imap_tokenizer_init(&t, "{99}\r\nab", 8);
	test_assert_int(imap_tokenizer_next(&t, &tok, &err), -1);
	test_assert(strstr(err.msg, "malformed literal") != NULL);
	buf_release(&tok.value);
	test_end();
}

static void fmt(struct buf *b, const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	imapclient_vfmt(NULL, b, f, ap);
	va_end(ap);
}

static void test_format(void)
{
	struct buf b = BUF_INIT;

	test_begin("imapclient: astring, qstring and literal formatting");
	fmt(&b, "CREATE %s", "user.bob");
	test_assert_str(b.s, "CREATE user.bob");
	buf_reset(&b);
	fmt(&b, "LIST %s %s", "", "*");
	test_assert_str(b.s, "LIST \"\" \"*\"");
	buf_reset(&b);
	fmt(&b, "CREATE %s", "user.bob.with space");
	test_assert_str(b.s, "CREATE \"user.bob.with space\"");
	buf_reset(&b);
	fmt(&b, "SETMETADATA %q (%q %q)", "user.bob", "/shared/comment", "a\"b");
	test_assert_str(b.s, "SETMETADATA \"user.bob\" (\"/shared/comment\" "
			"{3}\r\na\"b)");
	buf_reset(&b);
	fmt(&b, "X %a %d%%", "RAW", 5);
	test_assert_str(b.s, "X RAW 5%");
	buf_release(&b);
	test_end();
}

static void test_literal_suffix(void)
{
	size_t st;
	test_begin("imapparse_literal_suffix: {N}, {N+}, and not");
	test_assert_int(imapparse_literal_suffix("a {12}", 6, &st), 12);
	test_assert_int(st, 2);
	test_assert_int(imapparse_literal_suffix("a {3+}", 6, &st), 3);
	test_assert_int(imapparse_literal_suffix("a {}", 4, &st), -1);
	test_assert_int(imapparse_literal_suffix("a 3}", 4, &st), -1);
	test_assert_int(imapparse_literal_suffix("}", 1, &st), -1);
	test_end();
}

/* A listening socket on a free loopback port (into *port), or -1. */
static int listen_loopback(int *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	int ls = socket(AF_INET, SOCK_STREAM, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(ls, 1) < 0 ||
	    getsockname(ls, (struct sockaddr *)&sa, &sl) < 0) {
		if (ls >= 0)
			close(ls);
		return -1;
	}
	*port = ntohs(sa.sin_port);
	return ls;
}

/*
 * A one-connection server in a child: greets, answers the first command
 * (CAPABILITY) OK, then writes reply to the second and hangs up. Returns
 * its port; *pid_r is the child.
 */
static int scripted_server(const char *reply, pid_t *pid_r)
{
	int port;
	int ls = listen_loopback(&port);
	if (ls < 0)
		return -1;
	*pid_r = fork();
	if (*pid_r == 0) {
		char in[512];
		int c = accept(ls, NULL, NULL);
		static const char greet[] = "* OK hello\r\n";
		static const char ok[] = "1 OK done\r\n";
		if (c < 0 || write(c, greet, sizeof(greet) - 1) < 0 ||
		    read(c, in, sizeof(in)) <= 0 ||
		    write(c, ok, sizeof(ok) - 1) < 0 ||
		    read(c, in, sizeof(in)) <= 0 ||
		    write(c, reply, strlen(reply)) < 0)
			_exit(1);
		_exit(0);
	}
	close(ls);
	return port;
}

static void lost_after(const char *title, const char *reply,
		       const char *want)
{
	struct imapclient *ic = NULL;
	struct error err = ERROR_INIT;
	char port[16];
	pid_t pid = -1;
	test_begin(title);
	int p = scripted_server(reply, &pid);
	test_assert(p > 0);
	snprintf(port, sizeof(port), "%d", p);
	test_assert_int(imapclient_connect("127.0.0.1", port, NULL, &ic, &err),
			0);
	if (ic) {
		test_assert_int(imapclient_run(ic, NULL, NULL, NULL, &err,
					       "CAPABILITY"), IMAP_OK);
		test_assert_int(imapclient_run(ic, NULL, NULL, NULL, &err,
					       "CREATE %s", "x"), -1);
		test_assert_str(err.msg, want);
		test_assert(!imapclient_alive(ic));
		/* A dead connection refuses further commands, quietly. */
		test_assert_int(imapclient_run(ic, NULL, NULL, NULL, &err,
					       "NOOP"), -1);
		imapclient_close(&ic);
	}
	if (pid > 0)
		waitpid(pid, NULL, 0);
	test_end();
}

static void test_connection_lost(void)
{
	signal(SIGPIPE, SIG_IGN);
	lost_after("imapclient: server hangs up at a command", "",
		   "connection closed by server");
	lost_after("imapclient: server says BYE, then hangs up",
		   "* BYE going down\r\n",
		   "connection closed by server: going down");
	lost_after("imapclient: server hangs up in the middle of a response",
		   "* LIST (\\Noselect) \".\" {10}\r\nab",
		   "connection closed by server in the middle of a response");
}

/*
 * A server in a child that answers each command line "TAG WORDS" with
 * "* ECHO WORDS" and "TAG OK WORDS", in order, until the client hangs up.
 */
static int echo_server(pid_t *pid_r)
{
	int port;
	int ls = listen_loopback(&port);
	if (ls < 0)
		return -1;
	*pid_r = fork();
	if (*pid_r == 0) {
		char line[512];
		int c = accept(ls, NULL, NULL);
		FILE *in = c < 0 ? NULL : fdopen(c, "r");
		FILE *out = c < 0 ? NULL : fdopen(dup(c), "w");
		if (!in || !out)
			_exit(1);
		fputs("* OK hello\r\n", out);
		fflush(out);
		while (fgets(line, sizeof(line), in)) {
			char *sp = strchr(line, ' ');
			line[strcspn(line, "\r\n")] = '\0';
			if (!sp)
				break;
			*sp = '\0';
			fprintf(out, "* ECHO %s\r\n%s OK %s\r\n", sp + 1, line,
				sp + 1);
			fflush(out);
		}
		_exit(0);
	}
	close(ls);
	return port;
}

static void last_echo(const struct imap_reply *r, void *rock)
{
	if (!strcmp(r->keyword, "ECHO"))
		buf_set(rock, r->text, r->textlen);
}

static void test_send_ahead(void)
{
	struct imapclient *ic = NULL;
	struct error err = ERROR_INIT;
	struct buf echo = BUF_INIT, text = BUF_INIT;
	char port[16];
	pid_t pid = -1;
	test_begin("imapclient: commands sent ahead, answers read in order");
	int p = echo_server(&pid);
	test_assert(p > 0);
	snprintf(port, sizeof(port), "%d", p);
	test_assert_int(imapclient_connect("127.0.0.1", port, NULL, &ic, &err),
			0);
	if (ic) {
		test_assert_int(imapclient_send_ahead(ic, &err, "CREATE %s",
						      "a"), 0);
		test_assert_int(imapclient_send_ahead(ic, &err, "CREATE %s",
						      "b c"), 0);
		/* A synchronizing literal must wait for "+": not sent. */
		test_assert_int(imapclient_send_ahead(ic, &err, "CREATE %s",
						      "d\r\n"), 1);
		test_assert_int((int)imapclient_ahead(ic), 2);
		test_assert_int(imapclient_run(ic, last_echo, &echo, &text,
					       &err, "CREATE %s", "a"),
				IMAP_OK);
		test_assert_str(echo.s, "CREATE a");
		test_assert_str(text.s, "CREATE a");
		test_assert_int((int)imapclient_ahead(ic), 1);
		test_assert_int(imapclient_run(ic, last_echo, &echo, &text,
					       &err, "CREATE %s", "b c"),
				IMAP_OK);
		test_assert_str(echo.s, "CREATE \"b c\"");
		test_assert_int((int)imapclient_ahead(ic), 0);
		/* Another command than the one sent ahead: that one's
		 * answer is read and dropped, then this one goes out. */
		test_assert_int(imapclient_send_ahead(ic, &err, "DELETE x"), 0);
		test_assert_int(imapclient_run(ic, last_echo, &echo, &text,
					       &err, "DELETE y"), IMAP_OK);
		test_assert_str(echo.s, "DELETE y");
		test_assert_str(text.s, "DELETE y");
		test_assert_int((int)imapclient_ahead(ic), 0);
		/* The window is bounded. */
		for (int i = 0; i < IMAPCLIENT_AHEAD_MAX; i++)
			test_assert_int(imapclient_send_ahead(ic, &err,
							      "NOOP"), 0);
		test_assert_int(imapclient_send_ahead(ic, &err, "NOOP"), 1);
		for (int i = 0; i < IMAPCLIENT_AHEAD_MAX; i++)
			test_assert_int(imapclient_run(ic, NULL, NULL, NULL,
						       &err, "NOOP"), IMAP_OK);
		/* Corked: kept until uncork, then one write; the answers
		 * come back in order. */
		imapclient_cork(ic);
		test_assert_int(imapclient_send_ahead(ic, &err, "CREATE p"), 0);
		test_assert_int(imapclient_send_ahead(ic, &err, "CREATE q"), 0);
		test_assert_int((int)imapclient_ahead(ic), 2);
		test_assert_int(imapclient_uncork(ic, &err), 0);
		test_assert_int(imapclient_run(ic, last_echo, &echo, &text,
					       &err, "CREATE p"), IMAP_OK);
		test_assert_str(echo.s, "CREATE p");
		test_assert_int(imapclient_run(ic, last_echo, &echo, &text,
					       &err, "CREATE q"), IMAP_OK);
		test_assert_str(echo.s, "CREATE q");
		/* Running a command while corked sends the cork first
		 * (otherwise this would wait forever for an answer). */
		imapclient_cork(ic);
		test_assert_int(imapclient_send_ahead(ic, &err, "CREATE r"), 0);
		test_assert_int(imapclient_run(ic, last_echo, &echo, &text,
					       &err, "CREATE r"), IMAP_OK);
		test_assert_str(text.s, "CREATE r");
		test_assert_int((int)imapclient_ahead(ic), 0);
		test_assert(imapclient_alive(ic));
		imapclient_abandon(&ic);
	}
	if (pid > 0)
		waitpid(pid, NULL, 0);
	buf_release(&echo);
	buf_release(&text);
	test_end();
}

int main(void)
{
	static void (*const tests[])(void) = {
		test_untagged_and_tagged,
		test_literal_split,
		test_garbage,
		test_truncated,
		test_fuzz,
		test_tokenizer,
		test_format,
		test_literal_suffix,
		test_connection_lost,
		test_send_ahead,
		NULL,
	};
	return test_run(tests);
}
