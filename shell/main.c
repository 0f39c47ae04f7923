#include "compat.h"

#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "config.h"
#include "cyrus.h"
#include "cyrusdb.h"
#include "error.h"
#include "log.h"
#include "privs.h"
#include "xmalloc.h"

struct command {
	const char *name;
	/* Other names: Debian's "cyrus NAME" forms and argv[0] symlinks. */
	const char *const aliases[4];
	int (*fn)(int argc, char **argv, struct cyrus_ctx *ctx);
	unsigned flags;
	const char *summary;
	const char *usage;
};

#define DB_BACKENDS "flat, skiplist, quotalegacy, twoskip"

static const struct command commands[] = {
	{ "backup", { NULL }, cmd_backup, CMD_CONFIG | CMD_AS_CYRUS | CMD_WRITES,
	  "snapshot, list, verify, restore and prune backups of the store",
	  "usage: cyrus backup create [-C altconfig] [DIR] [--full] [-n] [-v] "
	  "[PATTERN...]\n"
	  "       cyrus backup list [DIR] [--json]\n"
	  "       cyrus backup verify [DIR] [SNAPSHOT]\n"
	  "       cyrus backup restore [-C altconfig] [DIR] [--snapshot ID|"
	  "--at TIME]\n"
	  "              [--as NEWNAME] [--force] [-n] [-v] --all|PATTERN...\n"
	  "       cyrus backup prune [DIR] --keep N|--keep-days D "
	  "[--max-unused PCT] [-n] [-v]\n"
	  "\n"
	  "DIR (default /var/backup/cyrus) is told from a PATTERN by its '/'. "
	  "The\n"
	  "archive format is open (doc/backup-format.md): tar, gzip and "
	  "sha1sum are\n"
	  "enough to get a message out. PATTERNs are internal mailbox names; "
	  "'*'\n"
	  "matches anything, '%' anything but '.'.\n"
	  "\n"
	  "create   a snapshot while the server runs: each mailbox under "
	  "Cyrus's locks,\n"
	  "         held briefly; messages stored once by GUID (incremental); "
	  "silent\n"
	  "         unless -v; exit 75 if another run holds the archive\n"
	  "  --full re-read every file and message (no reuse of unchanged "
	  "files)\n"
	  "  -n     count what would be stored, write nothing\n"
	  "list     the snapshots: time, mailboxes, messages, bytes, new "
	  "bytes\n"
	  "verify   re-reads every object of the snapshot (default: all): "
	  "SHA-1, size,\n"
	  "         manifest checksums; names what is damaged; exit 65 if "
	  "anything is\n"
	  "restore  into a stopped store, or beside a running server into "
	  "free names\n"
	  "         (through its locks); refuses an existing mailbox unless "
	  "--force\n"
	  "         (server stopped); --as restores NAME (with NAME.*\n"
	  "         also its children) under NEWNAME with a new uniqueid; "
	  "--at takes\n"
	  "         the newest snapshot not newer than TIME (UTC: YYYY-MM-DD"
	  "[ HH:MM[:SS]]\n"
	  "         or @UNIXTIME); --all restores every mailbox (disaster "
	  "recovery);\n"
	  "         quota usage is brought right\n"
	  "prune    keeps the newest N snapshots (or those of the last D days, "
	  "and\n"
	  "         always the newest), then removes objects no kept snapshot "
	  "needs;\n"
	  "         a pack is rewritten once more than PCT% (default 5) of it "
	  "is unused\n" },
	{ "ctl_cyrusdb", { "cyrusdb", NULL }, cmd_ctl_cyrusdb,
	  CMD_CONFIG | CMD_AS_CYRUS | CMD_WRITES,
	  "checkpoint (archive) or recover the cyrus databases",
	  "usage: ctl_cyrusdb [-C <altconfig>] -c [--repack] [--json|--summary]\n"
	  "       ctl_cyrusdb [-C <altconfig>] -r [-x] [--check] [--salvage] "
	  "[--json|--summary]\n"
	  "\n"
	  "  -c  checkpoint: rotate db.backup1 to db.backup2 and copy "
	  "mailboxes.db,\n"
	  "      quotas.db, annotations.db and backups.db into a fresh "
	  "db.backup1\n"
	  "      (each under its lock, written by rename)\n"
	  "  --repack  also repack twoskip and skiplist databases first\n"
	  "  -r  recover: convert databases of another format to the "
	  "configured\n"
	  "      backend, open each (crash recovery), check what recovery "
	  "touched, then fix the\n"
	  "      mailboxes.db entries as Cyrus does (reserved entries, "
	  "uniqueids,\n"
	  "      reverse ACLs); refuses while a Cyrus server runs on this\n"
	  "      configuration\n"
	  "  -x  skip the mailboxes.db entry fixes\n"
	  "  --check  check every record of every database, not only the "
	  "unclean ones\n"
	  "  --salvage  when recovery fails, rescue what checks out (the "
	  "damaged\n"
	  "      file is kept beside the result as FILE.damaged-TIME)\n"
	  "  --json, --summary  one line per database: status, size, time\n"
	  "  --verbose  report each database on stderr\n"
	  "Exits non-zero if any database failed, and names it.\n" },
	{ "ctl_mboxlist", { "mboxlist", NULL }, cmd_ctl_mboxlist,
	  CMD_CONFIG | CMD_AS_CYRUS | CMD_WRITES,
	  "dump, load or verify mailboxes.db",
	  "usage: ctl_mboxlist -d|-u|-v [options]\n"
	  "DUMP:\n"
	  "  ctl_mboxlist [-C <alt_config>] -d [-x] [-y] [-p partition] "
	  "[-f filename]\n"
	  "UNDUMP:\n"
	  "  ctl_mboxlist [-C <alt_config>] -u [-f filename] [-L]"
	  "    [< mboxlist.dump]\n"
	  "MUPDATE populate:\n"
	  "  ctl_mboxlist [-C <alt_config>] -m [-a] [-w] [-i] [-f filename]\n"
	  "VERIFY:\n"
	  "  ctl_mboxlist [-C <alt_config>] -v [-f filename]\n"
	  "\n"
	  "  -d  dump mailboxes.db as JSON (-p: one partition only, -x: "
	  "delete what\n"
	  "      was dumped, -y: include intermediate entries)\n"
	  "  -u  load a dump from stdin (-L: the 3.0 line format); all or "
	  "nothing,\n"
	  "      in one transaction\n"
	  "  -v  check mailboxes.db against the partitions (uuid and legacy "
	  "layout)\n"
	  "  -f  use this mailboxes.db file\n"
	  "  -m  (MUPDATE) not supported\n" },
	{ "cvt_cyrusdb", { NULL }, cmd_cvt_cyrusdb,
	  CMD_CONFIG | CMD_AS_CYRUS | CMD_WRITES,
	  "convert a database file between cyrus database formats",
	  "usage: cvt_cyrusdb [-C altconfig] <old db> <old db backend> "
	  "<new db> <new db backend>\n"
	  "Usable Backends: " DB_BACKENDS "\n"
	  "The new database is written beside its target and renamed over it\n"
	  "only after it has been read back and checked.\n" },
	{ "dbtool", { "cyr_dbtool", NULL }, cmd_dbtool,
	  CMD_CONFIG | CMD_AS_CYRUS | CMD_WRITES,
	  "inspect or change one cyrus database (cyr_dbtool)",
	  "usage: cyrus dbtool [-C altconfig] [-M] [-n] [-c] [-t|-T] <db file> "
	  "<db backend> <action> [<key>] [<value>]\n"
	  "Usable Backends: " DB_BACKENDS "\n"
	  "\n"
	  "Options:\n"
	  "  -n  create the database if it does not exist\n"
	  "  -c  convert the file to <db backend> if it is in another format\n"
	  "  -M  use the mailbox sort order\n"
	  "  -T  run all operations in one transaction\n"
	  "  -t  no transaction (the default)\n"
	  "\n"
	  "Actions:\n"
	  "* show [<prefix>]\n"
	  "* get <key>\n"
	  "* set <key> <value>\n"
	  "* delete <key>\n"
	  "* dump - internal format dump\n"
	  "* consistent - check consistency\n"
	  "* repack - repack/checkpoint the DB (if supported)\n"
	  "* batch - read from stdin and execute commands\n"
	  "* salvage <out|-> - rescue every record whose checksums hold from "
	  "a damaged\n"
	  "  twoskip or skiplist into a fresh <out> (- only reports what "
	  "was lost)\n"
	  "You may omit key or key/value and specify one per line on stdin\n"
	  "keys are terminated by tab or newline, values are terminated by "
	  "newline\n" },
	{ "help", { NULL }, NULL, 0, "list the commands, or show one's usage",
	  "usage: cyrus help [COMMAND]\n" },
	{ "mailbox", { NULL }, cmd_mailbox, CMD_CONFIG | CMD_AS_CYRUS,
	  "list, create, delete and rename mailboxes on the store",
	  "usage: cyrus mailbox list [-C altconfig] [-a] [--json] "
	  "[PATTERN...]\n"
	  "       cyrus mailbox create [-C altconfig] [-n] [-v] [-p partition] "
	  "[--quota LIMITS] NAME...\n"
	  "       cyrus mailbox delete [-C altconfig] [-n] [-v] NAME...\n"
	  "       cyrus mailbox rename [-C altconfig] [-n] [-v] [-p partition] "
	  "OLD NEW\n"
	  "\n"
	  "list: the mailboxes of mailboxes.db whose external name (as the "
	  "admin\n"
	  "sees it) matches an IMAP LIST pattern ('*' matches anything, '%' "
	  "anything\n"
	  "but the hierarchy separator; default '*'), in the order of IMAP "
	  "LIST.\n"
	  "  -a      also deleted (tombstone) and intermediate entries\n"
	  "  --json  one JSON object per mailbox: name, intname, partition,\n"
	  "          uniqueid, mbtype, flags, acl\n"
	  "\n"
	  "create, delete, rename: as imapd's CREATE, DELETE (delete_mode) and "
	  "RENAME, on\n"
	  "the store itself; refused while a Cyrus server uses this imapd.conf.\n"
	  "  -n           dry run: print what would be done, change nothing\n"
	  "  -v           print each step done\n"
	  "  -p PART      create: the partition; rename: move the files to PART "
	  "(OLD may\n"
	  "               equal NEW)\n"
	  "  --quota L    create: make NAME a quota root; L is a STORAGE limit "
	  "in KiB, or\n"
	  "               RESOURCE=N[,RESOURCE=N...]\n" },
	{ "makedirs", { NULL }, cmd_makedirs, CMD_CONFIG | CMD_WRITES,
	  "create the directories of configdirectory, partitions and sieve",
	  "usage: cyrus makedirs [-C altconfig] [-n] [--cleansquat]\n"
	  "\n"
	  "Creates what Debian's makedirs creates, read from imapd.conf: "
	  "configdirectory\n"
	  "(db proc socket log msg user quota lock, hash directories), "
	  "every partition\n"
	  "and metapartition (stage., hash directories with hashimapspool: "
	  "a..z, or\n"
	  "A..W with fulldirhash) and sievedir, owned by cyrus:mail. Only "
	  "what is missing\n"
	  "is created; modes and owners are re-applied. Run it as root.\n"
	  "  -n            print what would change (mkdir, chmod, chown, rm), "
	  "change nothing\n"
	  "  --cleansquat  also remove every cyrus.squat under the "
	  "partitions\n"
	  "Exit status: 78 if imapd.conf has no partition or no "
	  "configdirectory.\n" },
	{ "mbpath", { NULL }, cmd_mbpath, CMD_CONFIG | CMD_AS_CYRUS,
	  "print the directories of mailboxes",
	  "usage: mbpath [-C <alt_config>] [-l] [-m] [-q] [-s] [-u|p] "
	  "[-a|A|D|M|S|U] <mailbox name>...\n"
	  "\n"
	  "\t-j\tprint all values as a JSON object\n"
	  "\t-a\tprint all values with prefixes\n"
	  "\t-l\tlocal only (exit with error for remote/nonexistent)\n"
	  "\t-m\toutput the path to the metadata files (if different from "
	  "the message files)\n"
	  "\t-q\tquietly drop any error messages\n"
	  "\t-s\tstop on error\n"
	  "\t-7\tmailbox arguments are in modified UTF7 rather than UTF8\n"
	  "\t-u\targuments are user, not mailbox\n"
	  "\t-p\targuments are UNIX path, not mailbox\n"
	  "\t-A\tpartition archive directory\n"
	  "\t-D\tpartition data directory (*default*)\n"
	  "\t-M\tpartition metadata file directory (duplicate of -m)\n"
	  "\t-S\tsieve directory for the user\n"
	  "\t-U\tuser files directory (seen, sub, etc)\n" },
	{ "quota", { NULL }, cmd_quota, CMD_CONFIG | CMD_AS_CYRUS | CMD_WRITES,
	  "report quota roots and usage, or recompute the usage (-f)",
	  "usage: quota [-C <alt_config>] [-d <domain>] [-f] [-q] [-J] [-n] "
	  "[-u] [mailbox-spec]...\n"
	  "\n"
	  "  -d domain  only the quota roots of this virtual domain\n"
	  "  -f         recompute the usage of every root from its mailboxes, "
	  "fix the\n"
	  "             root recorded in each mailbox, remove roots no mailbox "
	  "uses;\n"
	  "             prints each change on stderr, then the report\n"
	  "  -n         with -f: print what would change, change nothing\n"
	  "  -q         with -f: no report afterwards\n"
	  "  -J, --json the report as a JSON object\n"
	  "  -u         arguments are user ids, not mailbox prefixes\n"
	  "  -Z         (the real tool's test hook) refused with status 64\n"
	  "mailbox-spec: prefixes of quota root names (external form); none: "
	  "all roots.\n"
	  "Safe on a running server: takes the server's quota and mailbox "
	  "locks.\n"
	  "Exit status: 64 usage, 74 I/O error, 75 locked, 65 bad data, 78 "
	  "configuration.\n" },
	{ "reconstruct", { NULL }, cmd_reconstruct,
	  CMD_CONFIG | CMD_AS_CYRUS | CMD_WRITES,
	  "rebuild cyrus.index and cyrus.cache from the message files",
	  "usage: reconstruct [-C <alt_config>] [-p partition] [-ksrfxqGRUMIoOn]"
	  " [-V version] [-j N] mailbox...\n"
	  "       reconstruct [-C <alt_config>] -P cyrus.header path...\n"
	  "\n"
	  "  -j N     N workers, each taking whole users (default: one per "
	  "CPU;\n"
	  "           -j 1 is sequential); output in the sequential order\n"
	  "  -p part  create missing mailboxes on partition part first\n"
	  "  -x       with -p/-f: do not import metadata, create anew\n"
	  "  -r       recurse into submailboxes\n"
	  "  -f       look for lost submailboxes on disk\n"
	  "  -s       do not stat message files\n"
	  "  -q       quiet: no mailbox name lines\n"
	  "  -n       report only, change nothing (also bad cache records)\n"
	  "  -G       re-parse every message file\n"
	  "  -R       give messages with a wrong GUID a new UID\n"
	  "  -U       remove messages with a wrong GUID\n"
	  "  -M       prefer mailboxes.db over cyrus.header/cyrus.index\n"
	  "  -I       give a clashing mailbox a new uniqueid\n"
	  "  -o       ignore odd files; -O remove them\n"
	  "  -V v     write cyrus.index in minor version v (or max)\n"
	  "  -u       arguments are user ids\n"
	  "  -P       arguments are paths of cyrus.header files\n"
	  "  -m       (rebuilding mailboxes.db is not supported)\n"
	  "Every cache record is checked against its CRC and rebuilt if "
	  "wrong.\n"
	  "Exit status: 0 (also when mailboxes were repaired), 64 usage, "
	  "75 mailboxes.db\nunreadable, 78 configuration.\n" },
};

/* The real program's name: its imapd.conf service keys ("cyr_dbtool_x:")
 * and its syslog ident. */
static const char *real_tool_name(const struct command *cmd)
{
	if (!strcmp(cmd->name, "dbtool"))
		return "cyr_dbtool";
	return cmd->name;
}

static const struct command *find_exact(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
		if (!strcmp(commands[i].name, name))
			return &commands[i];
		for (size_t j = 0; commands[i].aliases[j]; j++)
			if (!strcmp(commands[i].aliases[j], name))
				return &commands[i];
	}
	return NULL;
}

/* Debian's wrapper looks up NAME, then cyr_NAME, then ctl_NAME. */
static const struct command *find_command(const char *name)
{
	static const char *const prefixes[] = { "", "cyr_", "ctl_" };
	for (size_t i = 0; i < ARRAY_SIZE(prefixes); i++) {
		char *full = xasprintf("%s%s", prefixes[i], name);
		const struct command *cmd = find_exact(full);
		free(full);
		if (cmd)
			return cmd;
	}
	return NULL;
}

/* The argv[0] symlinks (make install): each acts as its subcommand. */
static const struct {
	const char *argv0, *command;
} argv0_names[] = {
	{ "cyrreconstruct", "reconstruct" }, { "cyrquota", "quota" },
	{ "cyrus-makedirs", "makedirs" },    { "ctl_cyrusdb", "ctl_cyrusdb" },
	{ "cvt_cyrusdb", "cvt_cyrusdb" },    { "ctl_mboxlist", "ctl_mboxlist" },
	{ "cyr_dbtool", "dbtool" },
};

static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t *row = xcalloc(lb + 1, sizeof(size_t));
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t best = diag + (a[i - 1] != b[j - 1]);
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	size_t d = row[lb];
	free(row);
	return d;
}

static void print_command_list(FILE *f)
{
	fprintf(f, "usage: cyrus [-C altconfig] COMMAND [ARGS]\n\n"
		   "Commands:\n");
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		if (!(commands[i].flags & CMD_HIDDEN))
			fprintf(f, "   %-14s%s\n", commands[i].name,
				commands[i].summary);
	fprintf(f, "\n'cyrus help COMMAND' or 'cyrus COMMAND --help' shows "
		   "a command's options.\n");
}

static NORETURN void unknown_command(const char *name)
{
	const char *best = NULL;
	size_t bestd = 3;
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++) {
		size_t d = edit_distance(name, commands[i].name);
		if (d < bestd) {
			bestd = d;
			best = commands[i].name;
		}
	}
	fprintf(stderr, "cyrus: '%s' is not a cyrus command\n", name);
	if (best)
		fprintf(stderr, "\nThe most similar command is\n\t%s\n", best);
	else
		fprintf(stderr, "See 'cyrus help'.\n");
	exit(EX_USAGE);
}

void cyrus_usage(const struct cyrus_ctx *ctx, bool ok)
{
	fputs(ctx->cmd->usage, ok ? stdout : stderr);
	if (ok) {
		fflush(stdout);
		exit(ferror(stdout) ? EX_IOERR : EX_OK);
	}
	exit(EX_USAGE);
}

void cyrus_setup(struct cyrus_ctx *ctx, const char *config_file)
{
	struct error err = ERROR_INIT;
	unsigned flags = ctx->cmd->flags;
	if (!(flags & CMD_CONFIG))
		return;
	if (!config_file)
		config_file = ctx->config_file;
	if (config_load(config_file, real_tool_name(ctx->cmd), &ctx->cfg,
			&err) < 0)
		fatal(error_exitcode(err.kind), "%s", err.msg);
	if ((flags & CMD_AS_CYRUS) && privs_become_cyrus(ctx->cfg, &err) < 0)
		fatal(error_exitcode(err.kind), "%s", err.msg);
	privs_set_umask(ctx->cfg);
	struct cyrusdb_env env;
	config_cyrusdb_env(ctx->cfg, &env);
	env.nosync = getenv("CYRUS_TOOLKIT_NOSYNC") != NULL;
	cyrusdb_init(&env);
	log_open_syslog(ctx->cfg);
}

/* Makes sure fds 0-2 are open, so that no file we open becomes stdout. */
static void sanitize_fds(void)
{
	for (int fd = 0; fd <= 2; fd++) {
		if (fcntl(fd, F_GETFD) < 0) {
			int n = open("/dev/null", O_RDWR);
			if (n < 0 || n > 2)
				exit(EX_OSERR);
		}
	}
}

static int run_command(const struct command *cmd, int argc, char **argv,
		       const char *config_file, bool via_cyrus)
{
	struct cyrus_ctx ctx = { 0 };
	char *progname = via_cyrus ? xasprintf("cyrus %s", cmd->name)
				   : xstrdup(argv[0]);
	ctx.cmd = cmd;
	ctx.progname = progname;
	ctx.config_file = config_file;
	log_init(progname, real_tool_name(cmd));
	for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
		if (!strcmp(argv[i], "--help"))
			cyrus_usage(&ctx, true);
	optind = 0; /* glibc's full reset for the command's own getopt */
	int r = cmd->fn(argc, argv, &ctx);

	/* A report to a full disk must fail loudly, not come out cut short. */
	if (fflush(stdout) || ferror(stdout) || fclose(stdout)) {
		log_error("cannot write to standard output: %s",
			  strerror(errno));
		if (!r)
			r = EX_IOERR;
	}
	config_free(&ctx.cfg);
	free(progname);
	return r;
}

static int cmd_help(int argc, char **argv)
{
	if (argc < 2) {
		print_command_list(stdout);
		return 0;
	}
	const struct command *cmd = find_command(argv[1]);
	if (!cmd)
		unknown_command(argv[1]);
	fputs(cmd->usage, stdout);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config_file = NULL;
	int c;

	sanitize_fds();
	/* Refuse to run setuid: these tools rewrite a mail store. */
	if (getuid() != geteuid() || getgid() != getegid()) {
		fprintf(stderr, "cyrus: refusing to run setuid or setgid\n");
		return EX_NOPERM;
	}

	/* Called through a symlink named like a real tool: act as it. */
	char *base = basename(argv[0]);
	for (size_t i = 0; i < ARRAY_SIZE(argv0_names); i++) {
		if (!strcmp(base, argv0_names[i].argv0)) {
			const struct command *cmd =
				find_command(argv0_names[i].command);
			if (!cmd) {
				fprintf(stderr, "%s: not built into this "
					"version of cyrus\n", base);
				return EX_UNAVAILABLE;
			}
			return run_command(cmd, argc, argv, NULL, false);
		}
	}

	log_init("cyrus", "cyrus");
	/* Global options stop at the command word ('+'). */
	while ((c = getopt_long(argc, argv, "+C:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'C':
			config_file = optarg;
			break;
		case 'h':
			print_command_list(stdout);
			return 0;
		default:
			print_command_list(stderr);
			return EX_USAGE;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1) {
		print_command_list(stderr);
		return EX_USAGE;
	}
	/* Debian's wrapper: "check" means chk_cyrus. */
	const char *name = !strcmp(argv[0], "check") ? "chk_cyrus" : argv[0];
	const struct command *cmd = find_command(name);
	if (!cmd)
		unknown_command(argv[0]);
	if (!cmd->fn)
		return cmd_help(argc, argv);
	return run_command(cmd, argc, argv, config_file, true);
}
