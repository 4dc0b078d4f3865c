#!/usr/bin/perl

# What nginx answers by itself in a registry location leaves with the
# spec's JSON error body and the API version header, keeping nginx's
# status and headers: auth_basic's 401 (and its challenge), deny's 403,
# client_max_body_size's 413, limit_req's 429 and 503, a 414 and a 400
# on the request line.  Other locations keep nginx's HTML pages.  Behind
# ssl_verify_client, nginx's 400 for a missing or refused client
# certificate (its 496 and 495, sent as 400) is UNAUTHORIZED, while other
# 400s on such a connection stay UNKNOWN (curl, certificates made with the
# openssl CLI).

use strict;
use warnings;

use Test::More;
use JSON::PP;
use File::Temp ();

use lib 't/lib';
use RegTest;
use RegTools qw(run_cmd);

my $t = RegTest->new(
    http_extra => <<'EOF',
    limit_req_zone $binary_remote_addr zone=slow:1m rate=1r/m;
    limit_req_zone $binary_remote_addr zone=busy:1m rate=1r/m;
EOF
    server_extra => <<'EOF',
        large_client_header_buffers 2 1k;

        location /other/ {
            return 403;
        }
EOF
    location_extra => <<'EOF');
            client_max_body_size 1k;

            location /v2/auth/ {
                registry on;
                auth_basic "registry test";
                auth_basic_user_file htpasswd;
            }

            location /v2/denied/ {
                registry on;
                deny all;
            }

            location /v2/slow/ {
                registry on;
                limit_req zone=slow;
                limit_req_status 429;
            }

            location /v2/busy/ {
                registry on;
                limit_req zone=busy;
            }
EOF

RegTest::spew($t->dir . '/htpasswd',
              'u:' . crypt('p', '$2y$05$abcdefghijklmnopqrstuu') . "\n");

# the status, code, JSON body, its length, its type and the API version
sub json_error {
    my ($r, $status, $code, $name) = @_;

    is($r->{status}, $status, "$name: status $status");
    is(RegTest::error_code($r), $code, "$name: $code");
    is($r->{headers}{'content-type'}, 'application/json',
       "$name: application/json");
    is($r->{headers}{'content-length'}, length($r->{content}),
       "$name: Content-Length is the JSON's");
    is($r->{headers}{'docker-distribution-api-version'}, 'registry/2.0',
       "$name: API version header");
    unlike($r->{content}, qr/<html/i, "$name: no HTML");
}

my $r = $t->req('GET', '/v2/auth/x/tags/list');
json_error($r, 401, 'UNAUTHORIZED', 'auth_basic without credentials');
is($r->{headers}{'www-authenticate'}, 'Basic realm="registry test"',
   "auth_basic's challenge kept");

$r = $t->req('HEAD', '/v2/auth/x/tags/list');
is($r->{status}, 401, 'HEAD: 401');
is($r->{content}, '', 'HEAD: no body');
is($r->{headers}{'content-type'}, 'application/json', 'HEAD: JSON type');

$r = $t->req('GET', '/v2/denied/x/tags/list');
json_error($r, 403, 'DENIED', 'deny all');

$r = $t->req('POST', '/v2/big/blobs/uploads/?digest=' . RegTest::digest('x' x 4096),
             content => 'x' x 4096);
json_error($r, 413, 'SIZE_INVALID', 'client_max_body_size');

is($t->req('GET', '/v2/slow/x/tags/list')->{status}, 404,
   'limit_req: the first request passes');
$r = $t->req('GET', '/v2/slow/x/tags/list');
json_error($r, 429, 'TOOMANYREQUESTS', 'limit_req_status 429');

$t->req('GET', '/v2/busy/x/tags/list');
$r = $t->req('GET', '/v2/busy/x/tags/list');
json_error($r, 503, 'UNAVAILABLE', 'limit_req, its default 503');

# before nginx knows the location: the request line
sub raw_reply {
    my ($bytes) = @_;
    my $reply = $t->raw($bytes);
    my ($head, $body) = split /\r\n\r\n/, $reply, 2;
    my ($status) = $head =~ m{^HTTP/1\.1 (\d+)};
    my %h;
    for (split /\r\n/, $head) {
        $h{lc $1} = $2 if /^([^:]+):\s*(.*)$/;
    }
    return { status => $status, headers => \%h, content => $body // '' };
}

$r = raw_reply('GET /v2/' . ('a' x 2048) . "/tags/list HTTP/1.1\r\n"
               . "Host: x\r\nConnection: close\r\n\r\n");
json_error($r, 414, 'NAME_INVALID', 'URI too long');

$r = raw_reply("GET /v2/ HTTP/1.1\r\nHost: x\r\nHost: y\r\n"
               . "Connection: close\r\n\r\n");
json_error($r, 400, 'UNKNOWN', 'two Host headers');

# the module's own errors are untouched, and other locations keep HTML
$r = $t->req('GET', '/v2/NotAName/tags/list');
json_error($r, 400, 'NAME_INVALID', "the module's own error");
is($r->{headers}{'docker-distribution-api-version'}, 'registry/2.0',
   '... one API version header');

$r = $t->req('GET', '/other/x');
is($r->{status}, 403, 'a location without the registry: 403');
like($r->{content}, qr/<html/i, '... an HTML page still');
ok(!$r->{headers}{'docker-distribution-api-version'},
   '... no API version header');

$t->stop();

# ssl_verify_client: a CA, a client certificate it signed, one it did not

SKIP: {
    my @have = grep { my $p = $_; grep { -x "$_/$p" } split /:/, $ENV{PATH} }
               qw(openssl curl);
    skip 'no openssl or curl', 12 unless @have == 2;

    my $d = File::Temp::tempdir('errtls-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
    my @ec = ('-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes');

    for my $cmd (
        ['req', '-x509', @ec, '-days', '2', '-subj', '/CN=test CA',
         '-keyout', "$d/ca.key", '-out', "$d/ca.pem"],
        ['req', '-x509', @ec, '-days', '2', '-subj', '/CN=localhost',
         '-keyout', "$d/srv.key", '-out', "$d/srv.pem"],
        ['req', @ec, '-subj', '/CN=alice', '-keyout', "$d/alice.key",
         '-out', "$d/alice.csr"],
        ['x509', '-req', '-in', "$d/alice.csr", '-CA', "$d/ca.pem",
         '-CAkey', "$d/ca.key", '-set_serial', '1', '-days', '2',
         '-out', "$d/alice.pem"],
        ['req', '-x509', @ec, '-days', '2', '-subj', '/CN=mallory',
         '-keyout', "$d/mallory.key", '-out', "$d/mallory.pem"]) {
        my ($rc, $out) = run_cmd(['openssl', @$cmd]);
        die "openssl @$cmd: $out" if $rc;
    }

    my $s = RegTest->new(listen_extra => 'ssl http2', server_extra => <<"EOF");
        ssl_certificate $d/srv.pem;
        ssl_certificate_key $d/srv.key;
        ssl_client_certificate $d/ca.pem;
        ssl_verify_client on;
EOF

    my $url = 'https://127.0.0.1:' . $s->port . '/v2/';

    sub curl_json {
        my (@args) = @_;
        my ($rc, $out) = run_cmd(['curl', '-sS', '-k', '-i', @args]);
        my ($head, $body) = split /\r\n\r\n/, $out, 2;
        my ($status) = ($head // '') =~ m{^HTTP/\S+ (\d+)};
        my %h = map { /^([^:]+):\s*(.*)$/ ? (lc $1 => $2) : () }
                split /\r\n/, $head // '';
        return { status => $status // 0, headers => \%h,
                 content => $body // '' };
    }

    $r = curl_json($url);
    is($r->{status}, 400, 'no client certificate: 400');
    is(RegTest::error_code($r), 'UNAUTHORIZED', '... UNAUTHORIZED');
    like($r->{content}, qr/no valid client certificate/, '... detail');
    is($r->{headers}{'docker-distribution-api-version'}, 'registry/2.0',
       '... API version header');

    $r = curl_json('--http1.1', $url);
    is(RegTest::error_code($r), 'UNAUTHORIZED',
       'no client certificate, HTTP/1.1: UNAUTHORIZED');

    $r = curl_json('--cert', "$d/mallory.pem", '--key', "$d/mallory.key", $url);
    is($r->{status}, 400, 'a certificate of another CA: 400');
    is(RegTest::error_code($r), 'UNAUTHORIZED', '... UNAUTHORIZED');

    my @alice = ('--cert', "$d/alice.pem", '--key', "$d/alice.key");

    $r = curl_json(@alice, $url);
    is($r->{status}, 200, "the CA's certificate: 200");

    $r = curl_json(@alice, "${url}NotAName/tags/list");
    is(RegTest::error_code($r), 'NAME_INVALID',
       "the CA's certificate: the module's own errors as they are");

    # a 400 of nginx's on a verified connection is no certificate matter

    my ($rc, $out) = run_cmd(['openssl', 's_client', '-quiet', '-ign_eof',
                              '-connect', '127.0.0.1:' . $s->port,
                              '-cert', "$d/alice.pem", '-key', "$d/alice.key"],
                             stdin => "GET /v2/ HTTP/1.1\r\nHost: a\r\n"
                                      . "Host: b\r\nConnection: close\r\n\r\n",
                             timeout => 20);
    my ($status, $body) = $out =~ m{^HTTP/1\.1 (\d+).*?\r\n\r\n(.*)}ms;
    $r = { status => $status // 0, content => $body // '' };
    is($r->{status}, 400, 'two Host headers with a good certificate: 400');
    is(RegTest::error_code($r), 'UNKNOWN', '... UNKNOWN');

    $s->stop();
}

done_testing();
