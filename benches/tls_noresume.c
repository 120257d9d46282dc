/*
 * benches/tls_noresume.c: an LD_PRELOAD shim for wrk (used by benches/load.sh)
 * that makes every TLS connection a full handshake, and counts them.
 *
 * wrk keeps one SSL object per connection slot and calls SSL_clear() when it
 * reconnects; OpenSSL keeps the last session through SSL_clear(), so with
 * `Connection: close` wrk resumes (TLS 1.3 PSK or a 1.2 session id/ticket) on
 * almost every connection: measured against nginx, 734 of 740 handshakes were
 * resumed. Servers differ in whether they allow that (rustls and OpenSSL both
 * do by default, and neither weir nor pingap exposes a switch), so the client
 * is what stops it: before a handshake starts, the shim drops the session the
 * SSL object still holds, so the ClientHello offers nothing to resume.
 *
 * With TLS_NORESUME_STATS=FILE in the environment, the process writes
 * "full resumed" (handshakes completed without and with resumption) to FILE
 * when it exits, so the script can check that every one was full.
 *
 *     cc -O2 -shared -fPIC -o noresume.so benches/tls_noresume.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;

/* libssl (1.1 and 3.x), resolved in wrk's process when first called */
int SSL_in_before(const SSL *s);
int SSL_set_session(SSL *s, SSL_SESSION *session);
int SSL_session_reused(const SSL *s);

static unsigned long full_handshakes, resumed_handshakes;

int SSL_connect(SSL *s) {
    static int (*real_connect)(SSL *);
    if (!real_connect) {
        real_connect = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_connect");
        if (!real_connect) {
            fprintf(stderr, "tls_noresume: SSL_connect not found\n");
            abort();
        }
    }
    /* wrk calls SSL_connect again after WANT_READ/WANT_WRITE: only touch the
     * session before the handshake has started */
    if (SSL_in_before(s)) SSL_set_session(s, NULL);
    int r = real_connect(s);
    if (r == 1) {
        if (SSL_session_reused(s))
            __atomic_add_fetch(&resumed_handshakes, 1, __ATOMIC_RELAXED);
        else
            __atomic_add_fetch(&full_handshakes, 1, __ATOMIC_RELAXED);
    }
    return r;
}

__attribute__((destructor)) static void write_stats(void) {
    const char *path = getenv("TLS_NORESUME_STATS");
    if (!path || !*path) return;
    FILE *f = fopen(path, "w");
    if (!f) return;
    fprintf(f, "%lu %lu\n", __atomic_load_n(&full_handshakes, __ATOMIC_RELAXED),
            __atomic_load_n(&resumed_handshakes, __ATOMIC_RELAXED));
    fclose(f);
}
