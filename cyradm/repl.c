/*
 * repl.c: the shell around the commands: reading lines (GNU readline, as
 * Term::ReadLine::Gnu does for the Perl one, so the echo of piped input is
 * the same), splitting them into words the way Cyrus::IMAP::Shell does
 * (quotes, backslashes, $VARS, ';' and redirections), running builtins or
 * else external programs.
 */
#include "compat.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <readline/history.h>
#include <readline/readline.h>

#include "cyradm.h"
#include "xmalloc.h"

int cyradm_die(struct cyradm *cy, const char *fmt, ...)
{
	va_list ap;
	struct buf b = BUF_INIT;
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	fputs(b.s, cy->err);
	if (!b.len || b.s[b.len - 1] != '\n')
		fputc('\n', cy->err);
	fflush(cy->err);
	buf_release(&b);
	return -1;
}

/* The text of the command as typed so far, for external programs. */
struct lexer {
	struct buf line;   /* the rest of the input (variables expand into it) */
	size_t pos;
	struct buf coll;   /* Shell.pm's $coll_command */
};

/*
 * Shell.pm keeps the command text in a global that only a run command
 * clears: after a syntax error it carries over into the next line.
 */
static struct buf coll_command = BUF_INIT;

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
	       c == '\v';
}

static bool is_word(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	       (c >= 'A' && c <= 'Z') || c == '_';
}

/*
 * The next token: returns -1 at the end, 0 for a word, 1 for one of
 * "&<>;". Quotes of either kind toggle quoting (and either kind closes),
 * as in Shell.pm.
 */
static int next_token(struct lexer *lx, struct buf *tok)
{
	bool quoted = false;
	int type = -1;
	buf_reset(tok);
	while (lx->pos < lx->line.len && is_space(lx->line.s[lx->pos]))
		buf_addch(&lx->coll, lx->line.s[lx->pos++]);
	while (lx->pos < lx->line.len &&
	       (quoted || !is_space(lx->line.s[lx->pos]))) {
		char c = lx->line.s[lx->pos];
		if (type < 0)
			type = 0;
		if (!quoted && strchr("&<>;", c)) {
			if (tok->len)
				break;
			buf_addch(tok, c);
			buf_addch(&lx->coll, c);
			lx->pos++;
			return 1;
		}
		if (!strchr("&<>;'\"$\\", c) && !is_space(c)) {
			buf_addch(tok, c);
			buf_addch(&lx->coll, c);
			lx->pos++;
			continue;
		}
		if (c == '\\' && lx->pos + 1 < lx->line.len &&
		    lx->line.s[lx->pos + 1] != '\n') {
			buf_addch(&lx->coll, '\\');
			buf_addch(&lx->coll, lx->line.s[lx->pos + 1]);
			buf_addch(tok, lx->line.s[lx->pos + 1]);
			lx->pos += 2;
			continue;
		}
		if (c == '$') {
			size_t s = lx->pos + 1, e, ns, ne;
			bool braced = s < lx->line.len && lx->line.s[s] == '{';
			ns = braced ? s + 1 : s;
			ne = ns;
			while (ne < lx->line.len && is_word(lx->line.s[ne]))
				ne++;
			e = ne;
			if (ne > ns && braced) {
				if (e < lx->line.len && lx->line.s[e] == '}')
					e++;
				else
					ne = ns; /* "${x" is no variable */
			}
			if (ne > ns) {
				char *name = xstrndup(lx->line.s + ns, ne - ns);
				const char *val = getenv(name);
				free(name);
				buf_addch(&lx->coll, '$');
				buf_add(&lx->coll, lx->line.s + s, e - s);
				/* The value replaces the reference, then is read
				 * again like typed text. */
				struct buf nl = BUF_INIT;
				buf_add(&nl, lx->line.s, lx->pos);
				buf_adds(&nl, val ? val : "");
				buf_add(&nl, lx->line.s + e, lx->line.len - e);
				buf_release(&lx->line);
				lx->line = nl;
				if (quoted)
					while (lx->pos < lx->line.len &&
					       is_space(lx->line.s[lx->pos]))
						buf_addch(&lx->coll,
							  lx->line.s[lx->pos++]);
				continue;
			}
		}
		if (c == '\'' || c == '"') {
			buf_addch(&lx->coll, c);
			lx->pos++;
			quoted = !quoted;
			continue;
		}
		buf_addch(tok, c);
		buf_addch(&lx->coll, c);
		lx->pos++;
	}
	return type;
}

/* Per-command file handles, as Shell.pm's $lfa. */
struct redirs {
	int fd[3];   /* -1: inherited; -2: closed */
};

static bool all_digits(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

static int apply_redir(struct cyradm *cy, struct redirs *rd, const char *op,
		       const char *dst, int target)
{
	int flags;
	bool amp = op[strlen(op) - 1] == '&';
	char base[4];
	snprintf(base, sizeof(base), "%.*s", (int)strlen(op) - (amp ? 1 : 0), op);

	if (!strcmp(base, ">")) {
		flags = O_WRONLY | O_CREAT | O_TRUNC;
		if (target < 0)
			target = 1;
	} else if (!strcmp(base, ">>")) {
		flags = O_WRONLY | O_CREAT | O_APPEND;
		if (target < 0)
			target = 1;
	} else if (!strcmp(base, "<")) {
		flags = O_RDONLY;
		if (target < 0)
			target = 0;
	} else {
		return cyradm_die(cy, "can't handle `%s' redirection", op);
	}
	if (target > 2)
		return cyradm_die(cy, "file descriptor `%d' not open", target);
	if (amp) {
		if (!strcmp(dst, "-")) {
			if (rd->fd[target] >= 0)
				close(rd->fd[target]);
			rd->fd[target] = -2;
			return 0;
		}
		/*
		 * Shell.pm tests "$dst != /^\d+$/", a number against a failed
		 * match: only descriptor 0 gets through.
		 */
		if (atof(dst) != 0)
			return cyradm_die(cy, "invalid file descriptor `%s'",
					  dst);
		int src = 0;
		int fd = rd->fd[src] >= 0 ? dup(rd->fd[src]) :
			rd->fd[src] == -2 ? -1 : dup(src);
		if (fd < 0)
			return cyradm_die(cy, "file descriptor `%s' not open",
					  dst);
		if (rd->fd[target] >= 0)
			close(rd->fd[target]);
		rd->fd[target] = fd;
		return 0;
	}
	int fd = open(dst, flags | O_CLOEXEC, 0666);
	if (fd < 0)
		return cyradm_die(cy, "%s: %s", dst, strerror(errno));
	if (rd->fd[target] >= 0)
		close(rd->fd[target]);
	rd->fd[target] = fd;
	return 0;
}

/*
 * Input that is not a terminal. Readline still reads it, so that the echo
 * and the keys (a tab completes, ^U kills ...) come out as with the Perl
 * one's Term::ReadLine::Gnu; but readline's own rl_getc select()s before
 * each byte and read()s it alone, and rl_catch_signals costs a dozen
 * sigaction calls a line: some 80 system calls a line, most of our CPU
 * on a long script. A regular file is read here a block at a time, and
 * its offset put back where byte-at-a-time reading would have left it
 * before a program run from the script can read it, and at exit; a pipe
 * is still read a byte at a time (what we took could not be given back).
 */
static struct {
	int fd;
	bool seekable;
	size_t pos, len, alloc;
	char *buf;
	off_t base;        /* offset in the input of buf[0] */
} script_in = { .fd = -1 };

void repl_sync_input(void)
{
	/* From a pipe: what is left in the buffer is read next, by us. */
	if (script_in.fd < 0 || !script_in.seekable)
		return;
	if (script_in.pos < script_in.len)
		lseek(script_in.fd, -(off_t)(script_in.len - script_in.pos),
		      SEEK_CUR);
	script_in.base += (off_t)script_in.pos;
	script_in.pos = script_in.len = 0;
}

/* Appends what read() gives (up to want bytes) to the buffer; its result. */
static ssize_t script_fill(size_t want)
{
	ssize_t n;
	if (script_in.alloc - script_in.len < want) {
		script_in.alloc = script_in.len + want + 4096;
		script_in.buf = xrealloc(script_in.buf, script_in.alloc);
	}
	do
		n = read(script_in.fd, script_in.buf + script_in.len, want);
	while (n < 0 && errno == EINTR);
	if (n > 0)
		script_in.len += (size_t)n;
	return n;
}

static int script_getc(FILE *f)
{
	int fd = fileno(f);
	if (fd != script_in.fd) {
		struct stat st;
		repl_sync_input();
		script_in.pos = script_in.len = 0;
		script_in.fd = fd;
		script_in.base = 0;
		script_in.seekable = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
	}
	if (script_in.pos < script_in.len)
		return (unsigned char)script_in.buf[script_in.pos++];
	script_in.base += (off_t)script_in.len;
	script_in.pos = script_in.len = 0;
	if (script_fill(script_in.seekable ? 4096 : 1) <= 0)
		return EOF;
	return (unsigned char)script_in.buf[script_in.pos++];
}

/*
 * The line of input that starts at offset from (not yet read by readline),
 * without its newline: reads more if needed, but from a pipe only what is
 * there already, and never past that line's newline (what we take from a
 * pipe could not be given back to a program run from the script). Returns
 * false if there is no whole line there yet.
 */
static bool script_peek_line(off_t from, const char **s, size_t *len)
{
	if (script_in.fd < 0 || from < script_in.base + (off_t)script_in.pos)
		return false;
	size_t start = (size_t)(from - script_in.base), scan = start;
	for (;;) {
		if (start <= script_in.len) {
			const char *nl = memchr(script_in.buf + scan, '\n',
						script_in.len - scan);
			if (nl) {
				*s = script_in.buf + start;
				*len = (size_t)(nl - *s);
				return true;
			}
			scan = script_in.len;
		}
		if (start > script_in.len || script_in.len - start > 65536)
			return false;
		if (!script_in.seekable) {
			struct pollfd p = { .fd = script_in.fd, .events = POLLIN };
			if (poll(&p, 1, 0) <= 0)
				return false;
		}
		if (script_fill(script_in.seekable ? 4096 : 1) <= 0)
			return false;
	}
}

/*
 * Readline asks before inserting each character whether more input is
 * waiting, with a select() that says yes for a regular file. So do we, for
 * a file without the system call; a pipe is asked as readline would.
 */
static int script_input_available(void)
{
	if (script_in.pos < script_in.len || script_in.seekable)
		return 1;
	if (script_in.fd < 0)
		return 0;
	struct pollfd p = { .fd = script_in.fd, .events = POLLIN };
	return poll(&p, 1, 0) > 0;
}

/* Runs an external program with the command text, as Perl's exec does. */
static void run_external(struct cyradm *cy, const char *cmdtext,
			 const char *av0, struct redirs *rd)
{
	fflush(stdout);
	fflush(stderr);
	repl_sync_input();
	pid_t pid = fork();
	if (pid < 0) {
		cyradm_die(cy, "fork: %s", strerror(errno));
		return;
	}
	if (pid > 0) {
		int st;
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		return;
	}
	for (int i = 0; i < 3; i++) {
		if (rd->fd[i] == -2)
			close(i);
		else if (rd->fd[i] >= 0)
			dup2(rd->fd[i], i);
	}
	signal(SIGINT, SIG_DFL);
	signal(SIGPIPE, SIG_DFL);
	/* Perl's exec: through /bin/sh only when there are metacharacters. */
	if (strpbrk(cmdtext, "$&*(){}[]'\";\\|?<>~`\n")) {
		execl("/bin/sh", "sh", "-c", cmdtext, (char *)NULL);
	} else {
		char *copy = xstrdup(cmdtext), *save = NULL;
		char **argv = xcalloc(strlen(cmdtext) / 2 + 2, sizeof(*argv));
		int n = 0;
		for (char *w = strtok_r(copy, " \t\n\r\f", &save); w;
		     w = strtok_r(NULL, " \t\n\r\f", &save))
			argv[n++] = w;
		argv[n] = NULL;
		if (n)
			execvp(argv[0], argv);
	}
	fprintf(stderr, "%s: %s\n", av0, strerror(errno));
	fflush(stderr);
	_exit(255);
}

static FILE *fdopen_dup(int fd, const char *mode)
{
	int d = dup(fd);
	if (d < 0)
		return NULL;
	FILE *f = fdopen(d, mode);
	if (!f)
		close(d);
	return f;
}

static void execute(struct cyradm *cy, struct lexer *lx, int argc,
		    char **argv, struct redirs *rd)
{
	const struct repl_command *cmd = repl_find(argv[0]);
	if (!cmd) {
		run_external(cy, lx->coll.s, argv[0], rd);
		return;
	}
	FILE *out = stdout, *err = stderr;
	if (rd->fd[1] >= 0)
		out = fdopen_dup(rd->fd[1], "w");
	if (rd->fd[2] >= 0)
		err = fdopen_dup(rd->fd[2], "w");
	if (!out)
		out = stdout;
	if (!err)
		err = stderr;
	cy->out = out;
	cy->err = err;
	if (rd->fd[1] == -2)
		cy->out = fopen("/dev/null", "w");
	if (rd->fd[2] == -2)
		cy->err = fopen("/dev/null", "w");
	if (!cy->out)
		cy->out = stdout;
	if (!cy->err)
		cy->err = stderr;
	cy->status = cmd->fn(cy, argv[0], argc, argv) < 0 ? -1 : 0;
	fflush(cy->out);
	fflush(cy->err);
	if (cy->out != stdout)
		fclose(cy->out);
	if (cy->err != stderr)
		fclose(cy->err);
	cy->out = stdout;
	cy->err = stderr;
}

static void free_args(char ***argv, int *argc)
{
	for (int i = 0; i < *argc; i++)
		free((*argv)[i]);
	*argc = 0;
}

static void reset_redirs(struct redirs *rd)
{
	for (int i = 0; i < 3; i++) {
		if (rd->fd[i] >= 0)
			close(rd->fd[i]);
		rd->fd[i] = -1;
	}
}

void repl_exec_line(struct cyradm *cy, const char *line)
{
	struct lexer lx = { BUF_INIT, 0, coll_command };
	struct buf tok = BUF_INIT;
	struct redirs rd = { { -1, -1, -1 } };
	char **argv = NULL, state[4] = "";
	int argc = 0, alloc = 0, type;

	buf_sets(&lx.line, line);
	while ((type = next_token(&lx, &tok)) >= 0) {
		if (type == 0) {
			if (!state[0]) {
				if (argc + 2 > alloc) {
					alloc = alloc * 2 + 8;
					argv = xrealloc(argv, sizeof(*argv) *
							(size_t)alloc);
				}
				argv[argc++] = xstrdup(tok.s);
				argv[argc] = NULL;
			} else {
				int target = -1;
				if (argc && all_digits(argv[argc - 1])) {
					target = atoi(argv[argc - 1]);
					free(argv[--argc]);
					argv[argc] = NULL;
				}
				if (apply_redir(cy, &rd, state, tok.s,
						target) < 0)
					goto out;
				state[0] = '\0';
			}
		} else if (tok.s[0] == ';') {
			if (argc)
				execute(cy, &lx, argc, argv, &rd);
			free_args(&argv, &argc);
			reset_redirs(&rd);
			buf_reset(&lx.coll);
		} else if (tok.s[0] == '&') {
			if (strcmp(state, "<") && strcmp(state, ">")) {
				cyradm_die(cy, "syntax error: cannot deal with "
					   "`&' here");
				goto out;
			}
			strncat(state, "&", sizeof(state) - strlen(state) - 1);
		} else {
			if (state[0] && (strcmp(state, tok.s) ||
					 !strcmp(state, "<"))) {
				cyradm_die(cy, "syntax error: cannot deal with "
					   "`%s' here", tok.s);
				goto out;
			}
			strncat(state, tok.s, sizeof(state) - strlen(state) - 1);
		}
	}
	if (argc) {
		execute(cy, &lx, argc, argv, &rd);
		buf_reset(&lx.coll);
	}
out:
	free_args(&argv, &argc);
	free(argv);
	reset_redirs(&rd);
	buf_release(&tok);
	buf_release(&lx.line);
	coll_command = lx.coll;
}

/*
 * Pipelining a script (stdin not a terminal): before a line runs, the IMAP
 * commands of the lines after it are sent too, as far as each line's
 * commands are known before any answer comes (the commands' plan
 * functions), so that the server works through them while we print. The
 * lines still run one by one, in order, reading their answers: what is
 * printed, and when, is unchanged. A line that cannot be planned (another
 * command, a redirection, ';', a program, a key readline would not simply
 * insert) ends the window until it has run: nothing after it is sent
 * before it, so "server", "disconnect", "authenticate", "exit" and
 * programs see the connection as they would one line at a time.
 */
static struct {
	bool on;
	off_t planned;   /* input planned up to here */
	off_t stop;      /* a line planned in part ends here: plan no further */
	unsigned want_lanes; /* connections in all, CYRADM_LANES; 1: one */
	bool lanes_tried;
	bool settling;   /* lanes just opened: the main one drains first */
	/* Lines sent on another lane than the main connection, in order:
	 * the offset where each ends, and its lane. */
	struct planned { off_t end; unsigned lane; } *q;
	size_t qhead, qn, qalloc;
	unsigned long on_lanes;   /* lines sent on other lanes, for tests */
	off_t running;   /* the line running now ends here */
	off_t barrier;   /* a line without a key, planned: it ends here */
} pipe_ahead;

/*
 * Lanes. The server works through each connection one command at a time,
 * so a long script is also spread over more connections to the same
 * server as the same user (CYRADM_LANES in all, default 4; 1: only the
 * one). A line that plans commands on one mailbox (the commands' flag
 * one_mailbox) goes to the lane of its mailbox's key: user.NAME, or the
 * first level of any other name, with the domain; so the commands on one
 * mailbox hierarchy stay in order on one connection. Any other line that
 * is planned (lm) waits until the other lanes are idle, and a line that is
 * not planned already waits for everything before it. Lines still run one
 * by one reading their answers: the output is unchanged.
 */
#define LANES_DEFAULT 4
#define LANES_MAX 16

static size_t lane_count(const struct cyradm *cy)
{
	return 1 + cy->conn->nlanes;
}

static struct imapclient *lane_ic(const struct cyradm *cy, unsigned lane)
{
	return lane ? cy->conn->lanes[lane - 1]->ic : cy->conn->ic;
}

/* Commands sent ahead and not yet answered, on every lane but one. */
static size_t ahead_elsewhere(const struct cyradm *cy, unsigned but)
{
	size_t n = 0;
	for (unsigned l = 0; l < lane_count(cy); l++)
		if (l != but)
			n += imapclient_ahead(lane_ic(cy, l));
	return n;
}

/* The lane of a mailbox name's key; -1 for a name with none. */
static int mailbox_lane(const struct cyradm *cy, const char *name)
{
	char sep = cy->conn->sep;
	const char *at = strrchr(name, '@');
	size_t len = at ? (size_t)(at - name) : strlen(name);
	if (!len || strcspn(name, "*%") < strlen(name))
		return -1;
	const char *s1 = memchr(name, sep, len);
	size_t klen = s1 ? (size_t)(s1 - name) : len;
	if (klen == 4 && !strncmp(name, "user", 4)) {
		if (!s1 || s1 + 1 == name + len)
			return -1;   /* "user" itself: above every user */
		const char *s2 = memchr(s1 + 1, sep,
					len - (size_t)(s1 + 1 - name));
		klen = s2 ? (size_t)(s2 - name) : len;
	}
	uint32_t h = 2166136261u;   /* FNV-1a of key and domain */
	for (size_t i = 0; i < klen; i++)
		h = (h ^ (unsigned char)name[i]) * 16777619u;
	for (const char *d = at; d && *d; d++)
		h = (h ^ (unsigned char)*d) * 16777619u;
	return (int)(h % lane_count(cy));
}

/*
 * Plans the commands of one line; PLAN_ALL, PLAN_NONE or PLAN_SOME, and
 * into *lane the lane they went to. PLAN_NONE also for a line that must
 * wait for the other lanes.
 */
static int plan_line(struct cyradm *cy, const char *line, unsigned *lane,
		     bool *keyless_r)
{
	bool keyless = false;
	struct lexer lx = { BUF_INIT, 0, BUF_INIT };
	struct buf tok = BUF_INIT;
	char **argv = NULL;
	int argc = 0, alloc = 0, type, r = PLAN_NONE;

	*lane = 0;
	buf_sets(&lx.line, line);
	while ((type = next_token(&lx, &tok)) == 0) {
		if (argc + 2 > alloc) {
			alloc = alloc * 2 + 8;
			argv = xrealloc(argv, sizeof(*argv) * (size_t)alloc);
		}
		argv[argc++] = xstrdup(tok.s);
		argv[argc] = NULL;
	}
	if (type < 0) {
		const struct repl_command *cmd = argc ? repl_find(argv[0]) :
			NULL;
		if (!argc) {
			r = PLAN_ALL;   /* an empty line sends nothing */
		} else if (cmd && cmd->plan) {
			int l = 0, k = 0;   /* one lane: all have a key */
			if (lane_count(cy) > 1) {
				if (pipe_ahead.settling &&
				    !imapclient_ahead(cy->conn->ic))
					pipe_ahead.settling = false;
				k = cmd->one_mailbox && argc > 1 ?
					mailbox_lane(cy, argv[1]) : -1;
				if (k < 0)  /* no key: after all the others */
					l = ahead_elsewhere(cy, 0) ? -1 : 0;
				else if (k > 0 && (pipe_ahead.settling ||
					 pipe_ahead.running <=
					 pipe_ahead.barrier))
					l = -1; /* not before what is on 0 */
				else
					l = k;
			}
			if (l >= 0) {
				struct imapclient *main_ic = cy->conn->ic;
				cy->conn->ic = lane_ic(cy, (unsigned)l);
				r = cmd->plan(cy, argc, argv);
				cy->conn->ic = main_ic;
				*lane = (unsigned)l;
				if (k < 0 && r != PLAN_NONE)
					keyless = true;
			}
		}
	}
	free_args(&argv, &argc);
	free(argv);
	buf_release(&tok);
	buf_release(&lx.line);
	buf_release(&lx.coll);
	*keyless_r = keyless;
	return r;
}

/* Notes that the line ending at end went to lane (not the main one). */
static void note_lane(off_t end, unsigned lane)
{
	if (!lane)
		return;
	pipe_ahead.on_lanes++;
	if (pipe_ahead.qhead + pipe_ahead.qn == pipe_ahead.qalloc) {
		if (pipe_ahead.qn)   /* (q is NULL before the first) */
			memmove(pipe_ahead.q, pipe_ahead.q + pipe_ahead.qhead,
				pipe_ahead.qn * sizeof(*pipe_ahead.q));
		pipe_ahead.qhead = 0;
		if (pipe_ahead.qn == pipe_ahead.qalloc) {
			pipe_ahead.qalloc = pipe_ahead.qalloc * 2 + 64;
			pipe_ahead.q = xrealloc(pipe_ahead.q,
				pipe_ahead.qalloc * sizeof(*pipe_ahead.q));
		}
	}
	pipe_ahead.q[pipe_ahead.qhead + pipe_ahead.qn++] =
		(struct planned){ end, lane };
}

/* The lane the line ending at end was sent on (0: the main one). */
static unsigned take_lane(off_t end)
{
	while (pipe_ahead.qn && pipe_ahead.q[pipe_ahead.qhead].end <= end) {
		struct planned p = pipe_ahead.q[pipe_ahead.qhead++];
		pipe_ahead.qn--;
		if (p.end == end)
			return p.lane;
	}
	return 0;
}

/*
 * True if readline reads s as the same line: each byte a key bound to
 * self-insert (no control character, tab, macro or meta key).
 */
static bool plain_keys(const char *s, size_t len)
{
	Keymap km = rl_get_keymap();
	if (rl_editing_mode != 1 || !km || km[(unsigned char)'\n'].type !=
	    ISFUNC || km[(unsigned char)'\n'].function != rl_newline)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c >= 0x7f || km[c].type != ISFUNC ||
		    km[c].function != rl_insert)
			return false;
	}
	return true;
}

static void cork_all(struct cyradm *cy)
{
	for (unsigned l = 0; l < lane_count(cy); l++)
		imapclient_cork(lane_ic(cy, l));
}

static void uncork_all(struct cyradm *cy)
{
	for (unsigned l = 0; l < lane_count(cy); l++) {
		struct error err = ERROR_INIT;
		if (imapclient_uncork(lane_ic(cy, l), &err) < 0)
			error_clear(&err);  /* run unsent, fail as without us */
	}
}

/* Every lane alive (a lost one ends the spreading: all on the main). */
static bool lanes_alive(struct cyradm *cy)
{
	for (size_t i = 0; i < cy->conn->nlanes; i++)
		if (!imapclient_alive(cy->conn->lanes[i]->ic))
			return false;
	return true;
}

/* Called with each line just read (it ends at here), before it runs. */
static void plan_ahead(struct cyradm *cy, const char *line, off_t here)
{
	unsigned lane;
	bool keyless;
	pipe_ahead.running = here;
	if (!cy->conn || !imapclient_alive(cy->conn->ic))
		return;
	if (cy->conn->nlanes && !lanes_alive(cy) &&
	    !ahead_elsewhere(cy, 0))
		cyradm_close_lanes(cy->conn);
	if (pipe_ahead.planned < here) {
		/* Not sent ahead: send it now, then what follows. */
		int r = plan_line(cy, line, &lane, &keyless);
		if (r == PLAN_NONE)
			return;
		pipe_ahead.planned = here;
		note_lane(here, lane);
		if (keyless)
			pipe_ahead.barrier = here;
		if (r == PLAN_SOME)
			pipe_ahead.stop = here;
	}
	if (pipe_ahead.stop >= here)
		return;
	/*
	 * Refill only windows half empty, in one write each: the server
	 * still has plenty queued, and a send per command would cost us
	 * more than the rest of the command's work.
	 */
	struct imapclient *ic = cy->conn->ic;
	if (ahead_elsewhere(cy, UINT_MAX) >
	    lane_count(cy) * IMAPCLIENT_AHEAD_MAX / 2)
		return;
	/* A long script (the main window full): open the other lanes. */
	if (!pipe_ahead.lanes_tried && pipe_ahead.want_lanes > 1 &&
	    imapclient_ahead(ic) >= IMAPCLIENT_AHEAD_MAX / 2 &&
	    lanes_alive(cy)) {
		pipe_ahead.lanes_tried = true;
		size_t got = cyradm_open_lanes(cy->conn, pipe_ahead.want_lanes - 1);
		if (got)
			pipe_ahead.settling = true;
	}
	cork_all(cy);
	for (;;) {
		const char *s;
		size_t len;
		if (!script_peek_line(pipe_ahead.planned, &s, &len) ||
		    !plain_keys(s, len))
			break;
		char *next = xstrndup(s, len);
		int r = plan_line(cy, next, &lane, &keyless);
		free(next);
		if (r == PLAN_NONE)
			break;
		pipe_ahead.planned += (off_t)len + 1;
		note_lane(pipe_ahead.planned, lane);
		if (keyless)
			pipe_ahead.barrier = pipe_ahead.planned;
		if (r == PLAN_SOME) {
			pipe_ahead.stop = pipe_ahead.planned;
			break;
		}
	}
	uncork_all(cy);
}

static struct cyradm *completion_cy;

static char *command_generator(const char *text, int state)
{
	static size_t idx, alias;
	size_t len = strlen(text);
	if (!state) {
		idx = 0;
		alias = 0;
	}
	while (idx < repl_ncommands) {
		const struct repl_command *c = &repl_commands[idx];
		const char *name;
		if (alias == 0)
			name = c->name;
		else
			name = c->aliases ? c->aliases[alias - 1] : NULL;
		if (!name) {
			idx++;
			alias = 0;
			continue;
		}
		alias++;
		if (!strncmp(name, text, len))
			return xstrdup(name);
	}
	return NULL;
}

struct mbox_list {
	char **names;
	size_t n, alloc;
};

static void collect_mbox(const struct imap_reply *r, void *rock)
{
	struct mbox_list *l = rock;
	struct imap_tokenizer t;
	struct imap_token tok = { IMAP_TOK_END, BUF_INIT };
	struct error err = ERROR_INIT;
	if (strcasecmp(r->keyword, "LIST"))
		return;
	imap_tokenizer_init(&t, r->text, r->textlen);
	/* (flags) "sep" name */
	if (imap_tokenizer_next(&t, &tok, &err) < 0 ||
	    tok.kind != IMAP_TOK_LPAREN)
		goto out;
	do {
		if (imap_tokenizer_next(&t, &tok, &err) < 0 ||
		    tok.kind == IMAP_TOK_END)
			goto out;
	} while (tok.kind != IMAP_TOK_RPAREN);
	if (imap_tokenizer_next(&t, &tok, &err) < 0 ||
	    imap_tokenizer_next(&t, &tok, &err) < 0 ||
	    tok.kind == IMAP_TOK_END || tok.kind == IMAP_TOK_LPAREN ||
	    tok.kind == IMAP_TOK_RPAREN)
		goto out;
	if (l->n + 2 > l->alloc) {
		l->alloc = l->alloc * 2 + 16;
		l->names = xrealloc(l->names, sizeof(char *) * l->alloc);
	}
	l->names[l->n++] = xstrdup(tok.value.s);
	l->names[l->n] = NULL;
out:
	buf_release(&tok.value);
}

static char *mailbox_generator(const char *text, int state)
{
	static struct mbox_list list;
	static size_t idx;
	if (!state) {
		for (size_t i = 0; i < list.n; i++)
			free(list.names[i]);
		list.n = 0;
		idx = 0;
		struct cyradm *cy = completion_cy;
		if (cy && cy->conn && imapclient_alive(cy->conn->ic)) {
			struct error err = ERROR_INIT;
			char *pat = xasprintf("%s*", text);
			imapclient_run(cy->conn->ic, collect_mbox, &list, NULL,
				       &err, "LIST \"\" %s", pat);
			free(pat);
		}
	}
	while (idx < list.n) {
		const char *n = list.names[idx++];
		if (!strncmp(n, text, strlen(text)))
			return xstrdup(n);
	}
	return NULL;
}

static char **cyradm_completion(const char *text, int start, int end UNUSED)
{
	rl_attempted_completion_over = 1;
	/* The first word is a command; later words are mailboxes. */
	int i = 0;
	while (i < start && (rl_line_buffer[i] == ' ' || rl_line_buffer[i] == '\t'))
		i++;
	if (i >= start)
		return rl_completion_matches(text, command_generator);
	return rl_completion_matches(text, mailbox_generator);
}

void repl_init_readline(struct cyradm *cy)
{
	completion_cy = cy;
	rl_readline_name = "cyradm";
	rl_attempted_completion_function = cyradm_completion;
	rl_completer_word_break_characters = (char *)" \t\n\"'<>;&";
	using_history();
}

static char *current_prompt(struct cyradm *cy)
{
	return xasprintf("%s> ", cy->conn ?
			 cyradm_server_shown(cy->conn) : "cyradm");
}

/*
 * A script's readline has no terminal to set up: its per-line tcgetattr
 * and window-size ioctls only fail (ENOTTY) and cost system calls. What
 * readline does then is echo the line; so do we.
 */
static void no_prep_terminal(int meta UNUSED)
{
	rl_tty_set_echoing(1);
}
static void no_deprep_terminal(void) {}

/*
 * Readline flushes its stream after the prompt and after the echo: three
 * writes a line. For a script its output goes into stdout's buffer
 * instead, in the same order as ours, and out with the line's flush.
 */
static ssize_t into_stdout(void *cookie UNUSED, const char *s, size_t n)
{
	return (ssize_t)fwrite(s, 1, n, stdout);
}

static FILE *script_outstream(void)
{
	static FILE *f;
	if (!f) {
		cookie_io_functions_t io = { .write = into_stdout };
		f = fopencookie(NULL, "w", io);
		if (!f)
			return stdout;
		setvbuf(f, NULL, _IONBF, 0);
	}
	return f;
}

void repl_run(struct cyradm *cy, FILE *in)
{
	rl_instream = in;
	rl_outstream = stdout;
	if (!cy->interactive) {
		static bool once;
		rl_getc_function = script_getc;
		rl_input_available_hook = script_input_available;
		rl_catch_signals = 0;
		rl_catch_sigwinch = 0;
		rl_prep_term_function = no_prep_terminal;
		rl_deprep_term_function = no_deprep_terminal;
		if (!isatty(STDOUT_FILENO))
			rl_outstream = script_outstream();
		if (!once) {
			once = true;
			atexit(repl_sync_input);
		}
		pipe_ahead.on = in == stdin && !getenv("CYRADM_NO_PIPELINE");
		const char *nl = getenv("CYRADM_LANES");
		pipe_ahead.want_lanes = nl && *nl ? (unsigned)atoi(nl) :
			LANES_DEFAULT;
		if (pipe_ahead.want_lanes < 1)
			pipe_ahead.want_lanes = 1;
		if (pipe_ahead.want_lanes > LANES_MAX)
			pipe_ahead.want_lanes = LANES_MAX;
	}
	for (;;) {
		char *prompt = current_prompt(cy);
		char *line = readline(prompt);
		free(prompt);
		if (!line)
			break;
		if (cy->interactive && in == stdin && *line)
			add_history(line);
		/* A line sent on another lane runs there. */
		struct cyradm_conn *conn = cy->conn;
		struct imapclient *main_ic = NULL;
		if (pipe_ahead.on) {
			off_t here = script_in.base + (off_t)script_in.pos;
			plan_ahead(cy, line, here);
			unsigned lane = take_lane(here);
			if (lane && conn && lane <= conn->nlanes) {
				main_ic = conn->ic;
				conn->ic = conn->lanes[lane - 1]->ic;
			}
		}
		repl_exec_line(cy, line);
		if (main_ic)
			conn->ic = main_ic;  /* such a line keeps its conn */
		free(line);
		fflush(stdout);
	}
	/* For the tests: how many lines went on other connections. */
	const char *report = getenv("CYRADM_LANES_REPORT");
	FILE *rf = report && *report ? fopen(report, "w") : NULL;
	if (rf) {
		fprintf(rf, "%lu\n", pipe_ahead.on_lanes);
		fclose(rf);
	}
}
