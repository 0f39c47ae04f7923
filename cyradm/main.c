/*
 * main.c: cyradm's command line (the Perl cyradm's options, parsed like
 * Getopt::Long: single or double dash, unique abbreviations, unknown
 * options reported and ignored), connecting, the startup files, the shell.
 */
#include "compat.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cyradm.h"
#include "saslclient.h"
#include "xmalloc.h"

static const char usage_text[] =
"Usage: cyradm [args] server\n"
"  --user <user>         Connect as <user> (authentication name)\n"
"  --authz <user>        Authorize as <user>\n"
"  --[no]rc              (Do not) load the configuration files\n"
"  --systemrc <file>     Use system-wide configuration <file>\n"
"  --userrc <file>       Use user configuration <file>\n"
"  --port <port>         Connect to server on <port>\n"
"  --auth <mechanism>    Authenticate with <mechanism>\n"
"  --tlskey <keyfile>    Use certificate with keyfile to authenticate with server\n"
"  --notls               Disable StartTLS negotiation\n"
"  --cafile <cacertfile> Use CA certificate file to validate server certificate\n"
"  --cadir <cacertdirectory> Use CA certificate directory to validate\n"
"                            server certificate\n"
"  --help                This help message\n"
"  --version             The version of Cyrus IMAP this utility is a part of\n"
"\n"
"Defaults to interactive mode. Please see man cyradm(1) and the 'help' command\n"
"in the cyradm-shell for details.\n";

enum {
	OPT_USERRC = 256, OPT_NORC, OPT_NOTLS, OPT_CAFILE, OPT_CADIR,
};

static const struct option longopts[] = {
	{ "user", required_argument, NULL, 'u' },
	{ "authz", required_argument, NULL, 'z' },
	{ "rc", no_argument, NULL, 'r' },
	{ "norc", no_argument, NULL, OPT_NORC },
	{ "no-rc", no_argument, NULL, OPT_NORC },
	{ "systemrc", required_argument, NULL, 'S' },
	{ "userrc", required_argument, NULL, OPT_USERRC },
	{ "server", required_argument, NULL, 's' },
	{ "port", required_argument, NULL, 'p' },
	{ "auth", required_argument, NULL, 'a' },
	{ "password", required_argument, NULL, 'w' },
	{ "tlskey", optional_argument, NULL, 't' },
	{ "notls", no_argument, NULL, OPT_NOTLS },
	{ "cafile", required_argument, NULL, OPT_CAFILE },
	{ "cadir", required_argument, NULL, OPT_CADIR },
	{ "capath", required_argument, NULL, OPT_CADIR },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'v' },
	{ NULL, 0, NULL, 0 },
};

static void set_str(char **dst, const char *v)
{
	free(*dst);
	*dst = xstrdup(v);
}

/* The option word as Getopt::Long names it: no dashes, no "=value". */
static char *opt_name(const char *arg)
{
	while (*arg == '-')
		arg++;
	const char *eq = strchr(arg, '=');
	return eq ? xstrndup(arg, (size_t)(eq - arg)) : xstrdup(arg);
}

static const char *long_name(int c)
{
	for (const struct option *o = longopts; o->name; o++)
		if (o->val == c)
			return o->name;
	return "?";
}

static bool is_file(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static void run_rc(struct cyradm *cy, const char *path)
{
	FILE *f;
	if (!path || !*path || !is_file(path))
		return;
	f = fopen(path, "r");
	if (!f)
		return;
	repl_run(cy, f);
	fclose(f);
}

int main(int argc, char **argv)
{
	struct cyradm cy = { 0 };
	struct cyradm_auth *a = &cy.defauth;
	char *server = xstrdup(""), *port = NULL, *systemrc, *userrc;
	bool dorc = true;
	int c;
	const char *home = getenv("HOME");

	signal(SIGPIPE, SIG_IGN);
	cy.out = stdout;
	cy.err = stderr;
	systemrc = xstrdup("/etc/cyradmrc.pl");
	userrc = xasprintf("%s/.cyradmrc.pl", home ? home : "");
	{
		const char *u = getenv("USER");
		if (!u || !*u)
			u = getenv("LOGNAME");
		if (u && *u)
			a->user = xstrdup(u);
	}

	char **words = xcalloc((size_t)argc + 1, sizeof(char *));
	int nwords = 0;
	opterr = 0;
	while ((c = getopt_long_only(argc, argv, "-:u:z:rS:s:p:a:w:t::hv",
				     longopts, NULL)) != -1) {
		switch (c) {
		case 1:
			/* A bare word (server, port), in order. */
			words[nwords++] = optarg;
			break;
		case 'u': set_str(&a->user, optarg); break;
		case 'z': set_str(&a->authz, optarg); break;
		case 'r': dorc = true; break;
		case OPT_NORC: dorc = false; break;
		case 'S': set_str(&systemrc, optarg); break;
		case OPT_USERRC: set_str(&userrc, optarg); break;
		case 's': set_str(&server, optarg); break;
		case 'p': {
			char *end;
			long n = strtol(optarg, &end, 10);
			if (!*optarg || *end || n < 0 || n > 65535)
				fprintf(stderr, "Value \"%s\" invalid for option "
					"port (number expected)\n", optarg);
			else {
				free(port);
				port = xasprintf("%ld", n);
			}
			break;
		}
		case 'a': set_str(&a->mech, optarg); break;
		case 'w': set_str(&a->password, optarg); break;
		case 't':
			a->tlskey_set = true;
			/* Getopt::Long's ":s" takes a following non-option. */
			if (!optarg && optind < argc && argv[optind][0] != '-')
				optarg = argv[optind++];
			set_str(&a->tlskey, optarg ? optarg : "");
			break;
		case OPT_NOTLS: a->notls = true; break;
		case OPT_CAFILE: set_str(&a->cafile, optarg); break;
		case OPT_CADIR: set_str(&a->capath, optarg); break;
		case 'h':
			fputs(usage_text, stdout);
			exit(0);
		case 'v':
			puts("version: Cyrus IMAP 1.00");
			exit(0);
		case ':': {
			const char *n = optopt ? long_name(optopt) : NULL;
			char *nm = opt_name(argv[optind - 1]);
			fprintf(stderr, "Option %s requires an argument\n",
				n && strcmp(n, "?") ? n : nm);
			free(nm);
			break;
		}
		default: {
			char *nm = opt_name(argv[optind - 1]);
			fprintf(stderr, "Unknown option: %s\n", nm);
			free(nm);
			break;
		}
		}
	}

	while (optind < argc)
		words[nwords++] = argv[optind++];

	if (*server && nwords) {
		fputs("cyradm: may not specify server both with --server and "
		      "bare arg\n", stderr);
		exit(255);
	}
	if (nwords) {
		set_str(&server, words[0]);
		if (nwords > 1) {
			free(port);
			/* Perl takes any word; a bad one fails to connect. */
			port = xstrdup(words[1]);
		}
		if (nwords > 2)
			fputs(usage_text, stdout);
	}
	free(words);

	cy.stdin_tty = isatty(STDIN_FILENO);
	cy.interactive = cy.stdin_tty;
	if (cy.interactive)
		repl_init_readline(&cy);

	if (*server) {
		struct error err = ERROR_INIT;
		cy.conn = cyradm_connect(server, port, a, &err);
		if (!cy.conn) {
			int e = errno;
			/* Not a refused connection: say what it was (TLS ...). */
			if (e == 0 && err.kind != ERR_NOUSER && err.msg[0])
				cyradm_print_failure(stderr, &err, a);
			if (err.kind == ERR_NOUSER)
				fprintf(stderr, "imclient_connect: %s\n", err.msg);
			else
				fputs("cyradm: cannot connect to server\n", stderr);
			/* A Perl die exits with errno, else 255. */
			exit(e > 0 && e < 256 ? e : 255);
		}
		if (!cyradm_authenticate(cy.conn, a, stderr)) {
			/* Perl's die exits with $!: what libsasl2 left; but
			 * the stty runs around its "IMAP Password: " prompt
			 * clear it. (A TLS failure is ours alone: the Perl
			 * one goes on.) */
			int e = cy.conn->tried_login &&
				!cy.conn->login_prompted ?
				saslclient_errno() : 0;
			fprintf(stderr, "cyradm: cannot authenticate to server%s%s "
				"as %s\n", a->mech ? " with " : "",
				a->mech ? a->mech : "", a->user ? a->user : "");
			exit(e > 0 && e < 256 ? e : 255);
		}
	}
	if (dorc) {
		run_rc(&cy, systemrc);
		run_rc(&cy, userrc);
	}
	repl_run(&cy, stdin);
	fflush(stdout);
	cyradm_disconnect(&cy.conn);
	cyradm_auth_release(a);
	free(server);
	free(port);
	free(systemrc);
	free(userrc);
	return 0;
}
