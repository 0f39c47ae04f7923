/* PLACEHOLDER: being written; replaced before the first commit. */
#include "compat.h"
#include "cyrusdb-private.h"

static int ph_open(const char *fname UNUSED, int flags UNUSED,
		   struct cyrusdb **db_r UNUSED, char *errmsg_r)
{
	snprintf(errmsg_r, 512, "backend skiplist not built yet");
	return CYRUSDB_NOTIMPLEMENTED;
}

const struct cyrusdb_backend cyrusdb_skiplist = {
	.name = "skiplist",
	.open = ph_open,
};
