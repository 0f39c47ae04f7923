/*
 * cyrus cvt_cyrusdb: copy every record of one database into a new one of
 * another backend. Unlike the real tool, which removes the target first
 * and then reports failure with exit 0, the new database is written beside
 * the target, read back and checked, and renamed over it only then; any
 * failure leaves the old target as it was and exits non-zero.
 */
#include "compat.h"

#include <getopt.h>

#include "commands.h"
#include "cyrus.h"
#include "cyrusdb.h"
#include "error.h"
#include "log.h"

int cmd_cvt_cyrusdb(int argc, char **argv, struct cyrus_ctx *ctx)
{
	static const struct option longopts[] = {
		{ NULL, 0, NULL, 0 },
	};
	const char *alt_config = NULL;
	int c;

	while ((c = getopt_long(argc, argv, "C:", longopts, NULL)) != -1) {
		switch (c) {
		case 'C':
			alt_config = optarg;
			break;
		default:
			cyrus_usage(ctx, false);
		}
	}
	argc -= optind;
	argv += optind;
	if (argc != 4)
		cyrus_usage(ctx, false);
	const char *old = argv[0], *oldbe = argv[1];
	const char *new = argv[2], *newbe = argv[3];
	for (int i = 1; i < 4; i += 2) {
		if (!cyrusdb_backend_exists(argv[i])) {
			log_error("unknown database backend '%s' (usable "
				  "backends: flat, skiplist, quotalegacy, "
				  "twoskip)", argv[i]);
			return EX_USAGE;
		}
	}

	cyrus_setup(ctx, alt_config);

	printf("Converting from %s (%s) to %s (%s)\n", old, oldbe, new, newbe);
	fflush(stdout);
	struct error err = ERROR_INIT;
	unsigned long n = 0;
	if (cyrusdb_convert(old, oldbe, new, newbe, &n, &err)) {
		log_error("%s", err.msg);
		return error_exitcode(err.kind);
	}
	log_info("%lu records converted", n);
	log_notice("converted %s (%s) to %s (%s): %lu records", old, oldbe,
		   new, newbe, n);
	return 0;
}
