/* crawler: the seed's concurrent crawler (aiohttp's ClientSession under
 * asyncio.gather, gevent's one greenlet per URL), on coru: one
 * coru_http_client shared by one coroutine per URL.
 *
 *     crawler [OPTION]... URL...      fetch these (http:// and https://)
 *     crawler [OPTION]... -f FILE     fetch every URL in FILE, one per line
 *
 *     --cafile FILE   https: trust the CAs in FILE (PEM) instead of the
 *                     system store
 *     --insecure      https: no certificate verification at all (for
 *                     throw-away test certificates only)
 *
 * Prints "starting: URL" as each fetch starts and "URL : STATUS (N bytes,
 * T ms)" as each finishes (so fast ones finish first, whatever the start
 * order), or "URL : error: ..." for a failed fetch (with what a TLS code
 * means), then a total line. Exit status: 0 if every fetch got a
 * response, 1 if any failed, 2 on a bad command line. */
#include <coru.h>
#include <coru/http.h>
#include <coru/tls.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What the TLS codes of an https fetch mean (coru/http.h). */
static const char *tls_hint(int rc)
{
    switch (-rc) {
    case EKEYEXPIRED: return " (TLS: the certificate has expired or is not yet valid)";
    case EKEYREJECTED: return " (TLS: the certificate is not for this host, or fails verification)";
    case ENOKEY: return " (TLS: the certificate chains to no trusted CA; see --cafile)";
    case EKEYREVOKED: return " (TLS: the certificate is revoked)";
    case ECONNABORTED: return " (TLS: the stream ended without close_notify)";
    default: return "";
    }
}

struct fetch {
    coru_http_client *cl;
    const char *url;
    int rc;
};

static void *fetch_one(void *arg)
{
    struct fetch *f = arg;
    printf("starting: %s\n", f->url);
    fflush(stdout);
    int64_t t0 = coru_now();
    int status = 0;
    char *body = NULL;
    size_t len = 0;
    f->rc = coru_http_get(f->cl, f->url, &status, &body, &len, t0 + 30 * INT64_C(1000000000));
    double ms = (double)(coru_now() - t0) / 1e6;
    if (f->rc == 0)
        printf("%s : %d (%zu bytes, %.0f ms)\n", f->url, status, len, ms);
    else
        printf("%s : error: %s%s\n", f->url, strerror(-f->rc), tls_hint(f->rc));
    fflush(stdout);
    free(body);
    return NULL;
}

struct crawl {
    char **urls;
    size_t n;
    int failed;
    coru_tls_config *tls; /* --cafile / --insecure; NULL: the client's default */
};

static void *crawl_main(void *arg)
{
    struct crawl *cr = arg;
    coru_http_client *cl;
    int rc = coru_http_client_create(&cl, &(struct coru_http_client_opts){.tls = cr->tls});
    if (rc) {
        fprintf(stderr, "crawler: %s\n", strerror(-rc));
        cr->failed = (int)cr->n;
        return NULL;
    }
    struct fetch *fs = calloc(cr->n, sizeof *fs);
    coru_t **hs = calloc(cr->n, sizeof *hs);
    if (!fs || !hs) {
        fprintf(stderr, "crawler: out of memory\n");
        exit(1);
    }
    int64_t t0 = coru_now();
    for (size_t i = 0; i < cr->n; i++) {
        fs[i] = (struct fetch){cl, cr->urls[i], 0};
        if ((rc = coru_spawn(&hs[i], fetch_one, &fs[i], NULL))) {
            fprintf(stderr, "crawler: spawn: %s\n", strerror(-rc));
            exit(1);
        }
    }
    for (size_t i = 0; i < cr->n; i++) {
        coru_join(hs[i], NULL);
        if (fs[i].rc) cr->failed++;
    }
    printf("total: %zu URLs, %zu ok, %d failed, %.0f ms\n", cr->n, cr->n - (size_t)cr->failed, cr->failed,
           (double)(coru_now() - t0) / 1e6);
    coru_http_client_destroy(cl);
    free(fs);
    free(hs);
    return NULL;
}

/* The URLs of a file, one per line (blank lines and '#' comments
 * skipped). */
static char **read_urls(const char *path, size_t *n)
{
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char **v = NULL, line[8192];
    size_t cap = 0;
    *n = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0] || line[0] == '#') continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            v = realloc(v, cap * sizeof *v);
            if (!v) exit(1);
        }
        v[(*n)++] = strdup(line);
    }
    fclose(f);
    return v;
}

static int usage(void)
{
    fprintf(stderr, "usage: crawler [--cafile FILE | --insecure] URL...\n"
                    "       crawler [--cafile FILE | --insecure] -f FILE\n");
    return 2;
}

int main(int argc, char **argv)
{
    struct crawl cr = {0};
    const char *cafile = NULL, *list = NULL;
    bool insecure = false;
    int a = 1;
    for (; a < argc && argv[a][0] == '-'; a++) {
        if (strcmp(argv[a], "--cafile") == 0 && a + 1 < argc) {
            cafile = argv[++a];
        } else if (strcmp(argv[a], "--insecure") == 0) {
            insecure = true;
        } else if (strcmp(argv[a], "-f") == 0 && a + 1 < argc) {
            list = argv[++a];
        } else {
            return usage();
        }
    }
    if ((cafile && insecure) || (list ? a != argc : a == argc)) return usage();
    if (cafile || insecure) {
        char why[256];
        struct coru_tls_client_opts o = {.ca_file = cafile, .insecure_skip_verify = insecure};
        int rc = coru_tls_client_config(&cr.tls, &o, why, sizeof why);
        if (rc) {
            fprintf(stderr, "crawler: %s\n", why[0] ? why : strerror(-rc));
            return 2;
        }
    }
    if (list) {
        cr.urls = read_urls(list, &cr.n);
        if (!cr.urls && cr.n == 0) {
            fprintf(stderr, "crawler: cannot read %s: %s\n", list, strerror(errno));
            coru_tls_config_free(cr.tls);
            return 2;
        }
    } else {
        cr.urls = argv + a;
        cr.n = (size_t)(argc - a);
    }
    bool from_file = list != NULL;
    int rc = coru_run(crawl_main, &cr, NULL);
    coru_tls_config_free(cr.tls); /* after the client (destroyed in crawl_main) */
    if (from_file) {
        for (size_t i = 0; i < cr.n; i++) free(cr.urls[i]);
        free(cr.urls);
    }
    if (rc) {
        fprintf(stderr, "crawler: coru_run: %s\n", strerror(-rc));
        return 1;
    }
    return cr.failed ? 1 : 0;
}
