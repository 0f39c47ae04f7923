/*
 * cyradm.h: what the parts of cyradm share: the session (the connection
 * and how to authenticate again), the command table, the shell loop.
 */
#ifndef CYRADM_CYRADM_H
#define CYRADM_CYRADM_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

#include "buf.h"
#include "imapclient.h"

/* How to authenticate; kept so referrals and "server" can do it again. */
struct cyradm_auth {
	char *user;       /* authentication id */
	char *authz;      /* authorization id */
	char *mech;       /* --auth: mechanism list, NULL: what the server offers */
	char *password;   /* -w, or typed at a prompt */
	char *tlskey;     /* --tlskey: client key/cert (also turns on STARTTLS) */
	bool tlskey_set;
	bool notls;
	char *cafile, *capath;
	unsigned minssf, maxssf;
	char *service;
};

/* A connection with what Cyrus::IMAP::Admin learnt at connect time. */
struct cyradm_conn {
	struct imapclient *ic;
	char *servername;         /* as the user typed it (shown: the
				   * canonical name, imapclient's) */
	bool referrals, metadata, list_extended, list_special_use,
	     create_special_use;
	char *error;              /* the last error, as Admin.pm's {error} */
	bool authenticated;
	bool caps_fresh;          /* nothing ran since connect's CAPABILITY */
	bool tried_login;         /* authenticate got past TLS to the login */
	bool login_prompted;      /* ... and asked "IMAP Password: " */
	struct cyradm_auth auth;  /* as used to authenticate */
	char *port;               /* as given to cyradm_connect (or NULL) */
	/* More connections to the same server as the same user, that a
	 * script's commands are spread over (repl.c); and the server's
	 * hierarchy separator, which they needed. */
	struct cyradm_conn **lanes;
	size_t nlanes;
	char sep;
};

struct cyradm {
	struct cyradm_conn *conn;  /* NULL: not connected */
	FILE *out, *err;           /* this command's stdout / stderr */
	int status;                /* of the last command */
	bool interactive;
	struct cyradm_auth defauth; /* from the command line */
	bool stdin_tty;
};

/* One REPL command (git's builtin table shape). */
struct repl_command {
	const char *name;
	const char *const *aliases;   /* NULL-terminated, as help lists them */
	int (*fn)(struct cyradm *cy, const char *name, int argc, char **argv);
	const char *usage;
	const char *help;
	/*
	 * Pipelining of scripts: sends ahead (imapclient_send_ahead) the IMAP
	 * commands fn would send for these words on the current connection,
	 * when fn sends a sequence of commands that no answer can change
	 * (nor end early, but by losing the connection). Returns PLAN_ALL
	 * when all were sent, PLAN_NONE when none was, PLAN_SOME otherwise.
	 * NULL: the command is never sent ahead.
	 */
	int (*plan)(struct cyradm *cy, int argc, char **argv);
	/*
	 * What plan sends reads or changes only the mailbox argv[1] and its
	 * hierarchy, nothing another mailbox's commands could see: a script
	 * may send it on another connection (repl.c's lanes).
	 */
	bool one_mailbox;
};

enum { PLAN_ALL, PLAN_NONE, PLAN_SOME };

extern const struct repl_command repl_commands[];
extern const size_t repl_ncommands;

/* Finds a command by name or alias; NULL if none. */
const struct repl_command *repl_find(const char *name);

/*
 * Connects like Cyrus::IMAP::Admin->new (CAPABILITY included). server may
 * be imaps://HOST[:PORT] (implicit TLS, verified with a's CA options; also
 * for port 993) or imap://HOST[:PORT]. Returns a connection, or NULL with
 * err and errno as imapclient_connect sets them.
 */
struct cyradm_conn *cyradm_connect(const char *server, const char *port,
				   const struct cyradm_auth *a,
				   struct error *err);
/*
 * Prints a failure to connect or to start TLS as "cyradm: MESSAGE", and
 * how to trust the server's CA when its certificate was not trusted and no
 * CA was named.
 */
void cyradm_print_failure(FILE *errf, const struct error *err,
		     const struct cyradm_auth *a);
/*
 * Authenticates like Cyrus::IMAP::authenticate and Admin.pm's wrapper
 * (RLIST "" "" when the server does referrals). Returns true on success;
 * messages the Perl one prints on the way go to errf.
 */
bool cyradm_authenticate(struct cyradm_conn *c, const struct cyradm_auth *a,
			 FILE *errf);
void cyradm_disconnect(struct cyradm_conn **c);
/* The server's name as the Perl one shows it (prompt, messages): imclient's
 * canonical name of the host. */
const char *cyradm_server_shown(const struct cyradm_conn *c);
/*
 * Opens up to n more connections to c's server, authenticated as c was
 * (only when c's password is known: nothing is asked, nothing printed),
 * into c->lanes; learns c->sep. Returns how many are open.
 */
size_t cyradm_open_lanes(struct cyradm_conn *c, size_t n);
void cyradm_close_lanes(struct cyradm_conn *c);
void cyradm_auth_copy(struct cyradm_auth *dst, const struct cyradm_auth *src);
void cyradm_auth_release(struct cyradm_auth *a);

/*
 * Runs a command on cy->conn as imapclient_vrun does. When the server
 * answers NO [REFERRAL imap://...] (and offers MAILBOX-REFERRALS) to one of
 * the commands whose referrals Admin.pm follows, runs it again on that
 * server, authenticated as cy->conn is, and returns that answer; failures
 * to get there are printed to cy->err and leave the referral's NO.
 */
int cyradm_vrun(struct cyradm *cy, imapclient_untagged_fn *cb, void *rock,
		struct buf *text, struct error *err, const char *fmt,
		va_list ap);
/* "host[:port]" of "[REFERRAL imap://...]", malloc'd, or NULL. */
char *cyradm_referral_server(const char *text);

/* Runs one input line (tokens, redirections, ';'). */
void repl_exec_line(struct cyradm *cy, const char *line);
/* Reads and runs lines from in (stdin or an rc file) until EOF. */
void repl_run(struct cyradm *cy, FILE *in);
/*
 * Gives back to the input file what was read ahead of the current line,
 * so that its offset is where the Perl one would leave it (before running
 * a program, at exit).
 */
void repl_sync_input(void);
/* Completion and history setup for an interactive terminal. */
void repl_init_readline(struct cyradm *cy);

/* Prints the message of a failed command (Perl's die) to cy->err. */
int cyradm_die(struct cyradm *cy, const char *fmt, ...) PRINTF_LIKE(2, 3);

#endif
