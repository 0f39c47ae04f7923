/*
 * progress.h: a progress bar on stderr, only when stderr is a terminal
 * (quiet in cron and in pipes). The width comes from the terminal's
 * description (ncurses' terminfo "cols"), else the window size, else 80.
 *
 * Output interleaved with the bar goes through progress_clear() first, so
 * that report lines never carry a half-drawn bar.
 */
#ifndef CYRUS_LIB_PROGRESS_H
#define CYRUS_LIB_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>

struct progress {
	bool on, drawn;
	size_t total, done;
	int cols;
	const char *unit;
};

/* unit names what is counted ("mailboxes"). Off unless stderr is a tty. */
void progress_begin(struct progress *p, size_t total, const char *unit);
/* One more item done; label (may be NULL) says which. */
void progress_step(struct progress *p, const char *label);
/* Erases the bar (if drawn) so that other output starts on a clean line. */
void progress_clear(struct progress *p);
/* Erases the bar for good. */
void progress_end(struct progress *p);

#endif
