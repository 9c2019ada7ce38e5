/* The Date header, formatted once a second per worker (as hyper's date.rs
 * and nginx's cached time): a response copies 37 bytes instead of calling
 * gmtime and strftime.
 *
 * Invariants: slot w is written and read only by coroutines running on
 * worker w, between two parks (coru_worker() cannot change in between),
 * so no slot is touched by two threads at once. Plain threads (worker -1)
 * format their own each time.
 */
#include <string.h>
#include <time.h>

#include "internal.h"

#define DATE_LEN 37 /* "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n" */
#define MAX_WORKERS 256

static struct {
    time_t sec;
    char line[DATE_LEN + 1];
} slots[MAX_WORKERS];

/* IMF-fixdate (RFC 9110 5.6.7) with fixed English names: strftime's %a
 * and %b would follow the application's locale. */
static void format(time_t t, char *out)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    gmtime_r(&t, &tm);
    int y = tm.tm_year + 1900;
    char *o = out;
    memcpy(o, "Date: ", 6);
    o += 6;
    memcpy(o, days[tm.tm_wday], 3);
    o += 3;
    *o++ = ',';
    *o++ = ' ';
    *o++ = (char)('0' + tm.tm_mday / 10);
    *o++ = (char)('0' + tm.tm_mday % 10);
    *o++ = ' ';
    memcpy(o, months[tm.tm_mon], 3);
    o += 3;
    *o++ = ' ';
    *o++ = (char)('0' + y / 1000 % 10);
    *o++ = (char)('0' + y / 100 % 10);
    *o++ = (char)('0' + y / 10 % 10);
    *o++ = (char)('0' + y % 10);
    *o++ = ' ';
    int f[3] = {tm.tm_hour, tm.tm_min, tm.tm_sec};
    for (int i = 0; i < 3; i++) {
        *o++ = (char)('0' + f[i] / 10);
        *o++ = (char)('0' + f[i] % 10);
        *o++ = i < 2 ? ':' : ' ';
    }
    memcpy(o, "GMT\r\n", 5);
    out[DATE_LEN] = '\0';
}

size_t coru__http_date(char *dst)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    int w = coru_worker();
    if (w < 0 || w >= MAX_WORKERS) {
        char line[DATE_LEN + 1];
        format(ts.tv_sec, line);
        memcpy(dst, line, DATE_LEN);
        return DATE_LEN;
    }
    if (slots[w].sec != ts.tv_sec || !slots[w].line[0]) {
        format(ts.tv_sec, slots[w].line);
        slots[w].sec = ts.tv_sec;
    }
    memcpy(dst, slots[w].line, DATE_LEN);
    return DATE_LEN;
}
