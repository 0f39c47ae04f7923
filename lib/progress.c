#include "compat.h"
#include "progress.h"

#include <curses.h>
#include <sys/ioctl.h>
#include <term.h>
#include <unistd.h>

static int terminal_cols(void)
{
	int err = 0, cols = -1;
	/* ncurses reads the terminal's description and, by default, the
	 * current window size over it. */
	if (setupterm(NULL, STDERR_FILENO, &err) == OK) {
		cols = tigetnum("cols");
		del_curterm(cur_term);
	}
	struct winsize ws;
	if (cols <= 0 && ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0)
		cols = ws.ws_col;
	return cols > 0 ? cols : 80;
}

void progress_begin(struct progress *p, size_t total, const char *unit)
{
	memset(p, 0, sizeof(*p));
	p->on = isatty(STDERR_FILENO) && total > 0;
	p->total = total;
	p->unit = unit;
	if (p->on)
		p->cols = terminal_cols();
}

void progress_step(struct progress *p, const char *label)
{
	if (!p->on)
		return;
	if (p->done < p->total)
		p->done++;
	char count[64];
	int clen = snprintf(count, sizeof(count), " %zu/%zu %s ", p->done,
			    p->total, p->unit);
	/* [#####     ] 12/100 mailboxes user.bob */
	int barw = p->cols / 3;
	if (barw < 10)
		barw = 10;
	int fill = (int)((double)barw * (double)p->done / (double)p->total);
	int room = p->cols - 1 - (barw + 2) - clen;
	fputs("\r\033[K[", stderr);
	for (int i = 0; i < barw; i++)
		fputc(i < fill ? '#' : ' ', stderr);
	fputc(']', stderr);
	fputs(count, stderr);
	if (label && room > 3)
		fprintf(stderr, "%.*s", room, label);
	fflush(stderr);
	p->drawn = true;
}

void progress_clear(struct progress *p)
{
	if (!p->on || !p->drawn)
		return;
	fflush(stdout);
	fputs("\r\033[K", stderr);
	fflush(stderr);
	p->drawn = false;
}

void progress_end(struct progress *p)
{
	progress_clear(p);
	p->on = false;
}
