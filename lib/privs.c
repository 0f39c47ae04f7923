#include "compat.h"
#include "privs.h"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "error.h"

int privs_become_cyrus(const struct config *cfg, struct error *err)
{
	if (geteuid() != 0)
		return 0;
	const char *user = config_getstring(cfg, "cyrus_user");
	const char *group = config_getstring(cfg, "cyrus_group");
	if (!user)
		user = "cyrus";
	struct passwd *pw = getpwnam(user);
	if (!pw)
		return error_set(err, ERR_NOUSER, "cannot become '%s': no such "
				 "user", user);
	gid_t gid = pw->pw_gid;
	if (group) {
		struct group *gr = getgrnam(group);
		if (!gr)
			return error_set(err, ERR_NOUSER, "cannot use group "
					 "'%s': no such group", group);
		gid = gr->gr_gid;
	}
	/* Order matters: groups while still root, then gid, then uid. */
	if (initgroups(user, gid) < 0 || setgid(gid) < 0 ||
	    setuid(pw->pw_uid) < 0)
		return error_sys(err, ERR_OS, errno, "cannot become '%s'",
				 user);
	return 0;
}

void privs_set_umask(const struct config *cfg)
{
	const char *u = config_getstring(cfg, "umask");
	char *end;
	long mask = strtol(u ? u : "077", &end, 8);
	if (*end || mask < 0 || mask > 0777)
		mask = 077;
	umask((mode_t)mask);
}
