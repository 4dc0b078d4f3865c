#!/usr/bin/perl

# The shipped configurations work as documented:
# - conf-examples/local.conf rendered as `make run` does: nginx -t, then it
#   serves a push and a pull;
# - conf-examples/production-tls.conf with a self-signed certificate, its
#   paths moved into a temp dir: nginx -t, HTTPS + HTTP/2, anonymous pulls,
#   pushes only with credentials (curl and skopeo), the port-80 redirect;
# - basic-auth.conf, tls-http2.conf, mtls.conf and auth-request.conf,
#   rendered with test paths (t/lib/ConfExample.pm), keys and certificates
#   made with the openssl CLI, bcrypt htpasswd files: nginx -t, then each
#   runs and curl sees one request allowed and one refused (with the
#   spec's JSON error), over TLS and HTTP/2 where the example is TLS
#   (t/auth_clients.t runs docker, podman and skopeo against them);
# - conf-examples/token-auth.conf, the issuer and the registry in one
#   nginx, over TLS + HTTP/2: nginx -t, the challenge, a token from the
#   realm with credentials (bcrypt), a push and a pull with it (curl and
#   skopeo); the issuer's registry_access rules: a grant they refuse in
#   part (bob asks to push alice/app: the token's access claim holds pull
#   only), anonymous pulls of public/** and nothing else (t/token_clients.t
#   runs docker, podman and skopeo against it);
# - conf-examples/metrics.conf, with registry-log-format.conf where it
#   includes it: nginx -t, then /health says ok, a push and two pulls
#   show in /metrics as such, and the access log says who pulled what in
#   the registry format;
# - docker/nginx.conf: nginx -t.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use File::Path qw(make_path);
use MIME::Base64 qw(encode_base64);
use Digest::SHA qw(sha1);

use lib 't/lib';
use RegTest;
use JWT;
use RegTools qw(run_cmd skopeo skopeo_ok slurp spew free_port start_nginx
                stop_nginx build_oci_image json_decode);
use ConfExample qw(render_example make_ca make_cert htpasswd identity_stub
                   basic curl_answer);

my $NGINX = $ENV{REGTEST_NGINX} || '/usr/sbin/nginx';
my $MODULE = $RegTest::MODULE;
my $REPO = $RegTest::REPO;
my $USER = getpwuid($>) // 'root';

my $tmp = tempdir('confex-XXXXXXXX', TMPDIR => 1, CLEANUP => !$ENV{REGTEST_LEAVE});

sub have { my ($p) = @_; return grep { -x "$_/$p" } split /:/, $ENV{PATH} }

sub nginx_t {
    my ($conf, $prefix, $name) = @_;
    my ($rc, $out) = run_cmd([$NGINX, '-t', '-p', "$prefix/", '-c', $conf],
                             env => { RegTest::nginx_env($prefix) });
    is($rc, 0, "$name: nginx -t") or diag($out);
    return $rc == 0;
}

sub no_alerts {
    my ($log, $name) = @_;
    my $text = -f $log ? slurp($log) : '';
    is(join("\n", grep { /\[(?:alert|emerg|crit)\]|exited on signal/ }
                  split /\n/, $text), '', "$name: no alerts in error.log");
}

sub curl {
    my (@args) = @_;
    return run_cmd(['curl', '-sS', @args]);
}

###############################################################################
# local.conf, rendered like `make run`

SKIP: {
    skip 'no curl', 8 unless have('curl');

    my $run = "$tmp/local/run";
    my $data = "$tmp/local/data";
    make_path($run, $data);

    my $port = free_port();
    (my $conf = slurp("$REPO/conf-examples/local.conf"))
        =~ s/\@MODULE\@/$MODULE/g;
    $conf =~ s/\@PORT\@/$port/g;
    $conf =~ s/\@DATA\@/$data/g;
    $conf =~ s/\@RUNDIR\@/$run/g;
    $conf =~ s/\@USER\@/$USER/g;

    unlike($conf, qr/\@[A-Z]+\@/, 'local.conf: every placeholder rendered');

    # in the foreground, nginx would also log to stderr: keep it in a file
    spew("$run/nginx.conf", $conf);

    skip 'local.conf does not pass nginx -t', 7
        unless nginx_t("$run/nginx.conf", $run, 'local.conf');

    my $n = start_nginx("$run/nginx.conf", $run, $port);
    my $base = "http://127.0.0.1:$port";

    my ($rc, $out) = curl('-i', "$base/v2/");
    like($out, qr{^HTTP/1\.1 200}, 'local.conf: GET /v2/');

    my $blob = "local blob\n";
    spew("$tmp/local/blob", $blob);
    my $d = RegTest::digest($blob);

    ($rc, $out) = curl('-o', '/dev/null', '-w', '%{http_code}', '-X', 'POST',
                       '--data-binary', "\@$tmp/local/blob",
                       "$base/v2/local/test/blobs/uploads/?digest=$d");
    is($out, '201', 'local.conf: monolithic push');

    ($rc, $out) = curl("$base/v2/local/test/blobs/$d");
    is($out, $blob, 'local.conf: blob pull');

    ok(-f "$data/docker/registry/v2/blobs/sha256/" . substr($d, 7, 2) . '/'
       . substr($d, 7) . '/data', 'local.conf: the store is @DATA@');

    ($rc, $out) = curl('-o', '/dev/null', '-w', '%{http_code}', '-X', 'DELETE',
                       "$base/v2/local/test/blobs/$d");
    is($out, '202', 'local.conf: registry_delete is on');

    stop_nginx($n);
    no_alerts("$run/error.log", 'local.conf');
}

###############################################################################
# production-tls.conf

SKIP: {
    skip 'no openssl or curl', 1 unless have('openssl') && have('curl');

    my $p = "$tmp/prod";
    make_path("$p/store", "$p/logs", "$p/tls");

    my ($rc, $out) = run_cmd(['openssl', 'req', '-x509', '-newkey', 'rsa:2048',
                              '-nodes', '-days', '2', '-subj', '/CN=localhost',
                              '-keyout', "$p/tls/key.pem",
                              '-out', "$p/tls/cert.pem"]);
    is($rc, 0, 'self-signed certificate') or diag($out);

    # {SHA} scheme: base64 of the SHA-1 of the password
    spew("$p/htpasswd", 'alice:{SHA}' . encode_base64(sha1('s3cret'), '') . "\n");

    my $https = free_port();
    my $http = free_port();

    my $conf = slurp("$REPO/conf-examples/production-tls.conf");

    my @subst = (
        [qr{^load_module \S+;}m, "load_module $MODULE;"],
        [qr{^user www-data;}m, "user $USER;"],
        [qr{^pid \S+;}m, "pid $p/nginx.pid;"],
        [qr{^error_log \S+}m, "error_log $p/logs/error.log"],
        [qr{access_log /var/log/nginx/registry\.access\.log}, "access_log $p/logs/access.log"],
        [qr{listen 80;}, "listen 127.0.0.1:$http;"],
        [qr{listen 443 ssl http2;}, "listen 127.0.0.1:$https ssl http2;"],
        [qr{/etc/nginx/tls/registry\.example\.com\.crt}, "$p/tls/cert.pem"],
        [qr{/etc/nginx/tls/registry\.example\.com\.key}, "$p/tls/key.pem"],
        [qr{/etc/nginx/registry\.htpasswd}, "$p/htpasswd"],
        [qr{/var/lib/registry}, "$p/store"],
        [qr{^http \{}m, "http {\n    client_body_temp_path $p/body;\n"
             . "    proxy_temp_path $p/proxy;\n    fastcgi_temp_path $p/fastcgi;\n"
             . "    uwsgi_temp_path $p/uwsgi;\n    scgi_temp_path $p/scgi;\n"],
    );

    for my $s (@subst) {
        my ($re, $to) = @$s;
        ok($conf =~ s/$re/$to/g, "production-tls.conf has $re");
    }

    $conf =~ s/^\s*listen \[::\]:\d+.*\n//mg;

    # raising the descriptor limit needs privileges a CI container may lack
    $conf =~ s/^worker_rlimit_nofile \d+;\n//m;
    spew("$p/nginx.conf", $conf);

    last unless nginx_t("$p/nginx.conf", $p, 'production-tls.conf');

    my $n = start_nginx("$p/nginx.conf", $p, $https);
    my $base = "https://127.0.0.1:$https";

    ($rc, $out) = curl('-k', '--http2', '-o', '/dev/null',
                       '-w', '%{http_code} %{http_version}', "$base/v2/");
    is($out, '401 2', 'TLS: /v2/ asks for credentials, over HTTP/2');

    ($rc, $out) = curl('-k', '--http2', '-u', 'alice:s3cret', '-o', '/dev/null',
                       '-w', '%{http_code} %{http_version}', "$base/v2/");
    is($out, '200 2', 'TLS: /v2/ with credentials');

    ($rc, $out) = curl('-o', '/dev/null', '-w', '%{http_code} %{redirect_url}',
                       "http://127.0.0.1:$http/v2/");
    like($out, qr{^301 https://127\.0\.0\.1/v2/}, 'port 80 redirects to https');

    # push over HTTP/2: refused anonymously, accepted with credentials

    my $blob = join('', map { chr($_ % 251) } 1 .. 3 * 1024 * 1024);
    spew("$p/blob", $blob);
    my $d = RegTest::digest($blob);
    my $url = "$base/v2/prod/img/blobs/uploads/?digest=$d";

    ($rc, $out) = curl('-k', '--http2', '-o', '/dev/null', '-w', '%{http_code}',
                       '-X', 'POST', '--data-binary', "\@$p/blob", $url);
    is($out, '401', 'TLS: anonymous push refused');

    ($rc, $out) = curl('-k', '--http2', '-u', 'alice:s3cret', '-o', '/dev/null',
                       '-w', '%{http_code} %{http_version}',
                       '-X', 'POST', '--data-binary', "\@$p/blob", $url);
    is($out, '201 2', 'TLS: 3 MiB monolithic push over HTTP/2 with credentials');

    # a streamed PATCH over HTTP/2 (no Content-Length: DATA frames only)

    ($rc, $out) = curl('-k', '--http2', '-u', 'alice:s3cret', '-i', '-X', 'POST',
                       "$base/v2/prod/img/blobs/uploads/");
    my ($loc) = $out =~ /^location:\s*(\S+)/mi;
    ok($loc, 'TLS: upload session opened');
    $loc //= '/none';
    $loc =~ s{^https?://[^/]+}{};

    ($rc, $out) = run_cmd(['sh', '-c',
        "cat '$p/blob' | curl -sS -k --http2 -u alice:s3cret -o /dev/null "
        . "-w '%{http_code}' -X PATCH -T - '$base$loc'"]);
    is($out, '202', 'TLS: streamed PATCH over HTTP/2');

    ($rc, $out) = curl('-k', '--http2', '-u', 'alice:s3cret', '-o', '/dev/null',
                       '-w', '%{http_code}', '-X', 'PUT', "$base$loc?digest=$d");
    is($out, '201', 'TLS: PUT ?digest= completes it');

    # pull anonymously

    ($rc, $out) = curl('-k', '--http2', "$base/v2/prod/img/blobs/$d",
                       '-o', "$p/pulled");
    ok(-f "$p/pulled" && slurp("$p/pulled") eq $blob, 'TLS: anonymous pull');

    # skopeo: push with credentials, pull without

    if (have('skopeo') && have('umoci')) {
        build_oci_image("$p/oci", 'latest');

        my ($src) = ("oci:$p/oci:latest");
        my $dst = "docker://127.0.0.1:$https/prod/skopeo:v1";

        my ($src_rc) = skopeo('copy', '--dest-tls-verify=false', $src, $dst);
        isnt($src_rc, 0, 'skopeo push without credentials fails');

        skopeo_ok('skopeo push with credentials (TLS, HTTP/2)',
                  'copy', '--dest-tls-verify=false',
                  '--dest-creds', 'alice:s3cret', $src, $dst);

        skopeo_ok('skopeo anonymous pull',
                  'copy', '--src-tls-verify=false', $dst, "dir:$p/pulled-img");

        my $json = skopeo_ok('skopeo list-tags anonymously', 'list-tags',
                             '--tls-verify=false',
                             "docker://127.0.0.1:$https/prod/skopeo");
        is_deeply((json_decode($json) || {})->{Tags}, ['v1'], 'tags');

        my ($del_rc) = skopeo('delete', '--tls-verify=false', $dst);
        isnt($del_rc, 0, 'skopeo delete without credentials fails');

        skopeo_ok('skopeo delete with credentials', 'delete',
                  '--tls-verify=false', '--creds', 'alice:s3cret', $dst);
    }

    stop_nginx($n);

    like(slurp("$p/logs/access.log"), qr{"POST /v2/prod/img/blobs/uploads/\S* HTTP/2\.0" 201 .* in=\d+ t=},
         'TLS: access log in the registry format');
    no_alerts("$p/logs/error.log", 'production-tls.conf');
}

###############################################################################
# basic-auth.conf, tls-http2.conf, mtls.conf, auth-request.conf: rendered,
# nginx -t, started, one request allowed and one refused

# renders conf-examples/$name into $tmp/$name, checks it; nginx -t and a
# start; $check->($ports) makes its requests; then the error log
sub run_example {
    my ($name, $files, $ports, $check, %o) = @_;

    my $p = "$tmp/$name";
    my ($text, @missing) = render_example($name, $p,
                                          ports => $ports, subst => $o{subst});
    is(join(', ', @missing), '', "$name: rendered with the test's paths");

    for my $f (sort keys %$files) {
        make_path("$p/etc/" . ($f =~ m{^(.*)/} ? $1 : ''));
        spew("$p/etc/$f", $files->{$f});
    }

    spew("$p/nginx.conf", $text);

    SKIP: {
        skip "$name does not pass nginx -t", 1
            unless nginx_t("$p/nginx.conf", $p, $name);

        my ($first) = sort { $a <=> $b } keys %$ports;
        my $n = start_nginx("$p/nginx.conf", $p, $ports->{$first});
        $check->($ports);
        stop_nginx($n);
    }

    no_alerts("$p/log/error.log", $name);
}

SKIP: {
    skip 'no openssl or curl', 1 unless have('openssl') && have('curl');

    my $pki = "$tmp/pki";
    make_ca($pki, 'ca', '/CN=conf_examples.t CA');
    make_cert($pki, 'server', '/CN=registry.example.com', 'ca',
              san => 'IP:127.0.0.1,DNS:registry.example.com');
    make_cert($pki, 'alice', '/O=Example/OU=registry/CN=alice', 'ca');

    my %tls = ('tls/registry.example.com.crt' => slurp("$pki/server.crt"),
               'tls/registry.example.com.key' => slurp("$pki/server.key"));
    my %htpasswd = ('registry.htpasswd' => htpasswd(alice => 'pw-alice'));
    my @ca = ('--cacert', "$pki/ca.crt");

    my $blob = "conf example blob\n";
    spew("$tmp/blob", $blob);
    my $d = RegTest::digest($blob);
    my @push = ('-X', 'POST', '--data-binary', "\@$tmp/blob");

    run_example('basic-auth.conf', \%htpasswd,
                { 5000 => free_port(), 5001 => free_port() }, sub {
        my ($port) = @_;
        my $base = "http://127.0.0.1:$port->{5000}";

        my $r = curl_answer(@push, "$base/v2/public/app/blobs/uploads/?digest=$d");
        is("$r->{status} $r->{code}", '401 UNAUTHORIZED',
           'basic-auth.conf: anonymous push refused, JSON');
        is($r->{headers}{'www-authenticate'}, 'Basic realm="registry"',
           'basic-auth.conf: ... with the challenge');

        $r = curl_answer('-u', 'alice:pw-alice', @push,
                         "$base/v2/alice/app/blobs/uploads/?digest=$d");
        is($r->{status}, 201, 'basic-auth.conf: alice pushes alice/app');

        $r = curl_answer("http://127.0.0.1:$port->{5001}/v2/");
        is($r->{status}, 200, 'basic-auth.conf: the anonymous server asks nothing');
    });

    run_example('tls-http2.conf', { %tls, %htpasswd }, { 443 => free_port() }, sub {
        my ($port) = @_;
        my $base = "https://127.0.0.1:$port->{443}";

        my $r = curl_answer(@ca, '--http2', '-u', 'alice:pw-alice', @push,
                            "$base/v2/alice/app/blobs/uploads/?digest=$d");
        is("$r->{status} $r->{version}", '201 2',
           'tls-http2.conf: alice pushes alice/app over HTTP/2');

        $r = curl_answer(@ca, '--http2', '-u', 'alice:pw-alice', @push,
                         "$base/v2/public/app/blobs/uploads/?digest=$d");
        is("$r->{status} $r->{code} $r->{version}", '403 DENIED 2',
           'tls-http2.conf: alice may not push public/app: DENIED');
    });

    run_example('mtls.conf', { %tls, 'tls/clients-ca.crt' => slurp("$pki/ca.crt") },
                { 443 => free_port() }, sub {
        my ($port) = @_;
        my $base = "https://127.0.0.1:$port->{443}";

        my $r = curl_answer(@ca, '--http2', "$base/v2/");
        is("$r->{status} $r->{code} $r->{version}", '400 UNAUTHORIZED 2',
           'mtls.conf: no client certificate: 400 UNAUTHORIZED');

        $r = curl_answer(@ca, '--http2', '--cert', "$pki/alice.crt",
                         '--key', "$pki/alice.key", @push,
                         "$base/v2/team-a/app/blobs/uploads/?digest=$d");
        is("$r->{status} $r->{version}", '201 2',
           "mtls.conf: alice's certificate pushes team-a/app");
    });

    my $identity = free_port();

    run_example('auth-request.conf', {}, { 5000 => free_port() }, sub {
        my ($port) = @_;
        my $base = "http://127.0.0.1:$port->{5000}";

        my $r = curl_answer('-u', 'alice:pw-alice', @push,
                            "$base/v2/alice/app/blobs/uploads/?digest=$d");
        is($r->{status}, 201, 'auth-request.conf: alice (the service says) pushes');

        $r = curl_answer('-u', 'alice:wrong', "$base/v2/");
        is("$r->{status} $r->{code}", '401 UNAUTHORIZED',
           "auth-request.conf: the service's 401, JSON");
    }, subst => [
        [qr/server 127\.0\.0\.1:9000;/, "server 127.0.0.1:$identity;"],
        [qr/\}\s*\z/, identity_stub($identity,
                                    basic('alice', 'pw-alice') => 'alice') . "}\n"],
    ]);
}

###############################################################################
# token-auth.conf

SKIP: {
    skip 'no openssl or curl', 1 unless have('openssl') && have('curl');

    my $p = "$tmp/token";
    make_path("$p/store", "$p/logs", "$p/tls");

    my ($rc, $out) = run_cmd(['openssl', 'req', '-x509', '-newkey', 'rsa:2048',
                              '-nodes', '-days', '2', '-subj', '/CN=localhost',
                              '-keyout', "$p/tls/key.pem",
                              '-out', "$p/tls/cert.pem"]);
    is($rc, 0, 'token-auth.conf: a self-signed certificate') or diag($out);

    # the commands of the file's comment
    ($rc, $out) = run_cmd(['openssl', 'genpkey', '-algorithm', 'EC', '-pkeyopt',
                           'ec_paramgen_curve:P-256', '-out', "$p/token.key"]);
    is($rc, 0, 'token-auth.conf: the signing key') or diag($out);
    ($rc, $out) = run_cmd(['openssl', 'pkey', '-in', "$p/token.key", '-pubout',
                           '-out', "$p/token.pub"]);
    is($rc, 0, 'token-auth.conf: its public half') or diag($out);

    spew("$p/htpasswd", 'alice:' . crypt('s3cret', '$2y$05$abcdefghijklmnopqrstuu')
                        . "\nbob:" . crypt('b0b', '$2y$05$bcdefghijklmnopqrstuvu')
                        . "\n");

    my $port = free_port();
    my $host = "127.0.0.1:$port";

    my $conf = slurp("$REPO/conf-examples/token-auth.conf");

    my @subst = (
        [qr{^load_module \S+;}m, "load_module $MODULE;"],
        [qr{^user www-data;}m, "user $USER;"],
        [qr{^pid \S+;}m, "pid $p/nginx.pid;"],
        [qr{^error_log \S+}m, "error_log $p/logs/error.log"],
        [qr{access_log /var/log/nginx/registry\.access\.log}, "access_log $p/logs/access.log"],
        [qr{listen 443 ssl http2;}, "listen $host ssl http2;"],
        [qr{/etc/nginx/tls/registry\.example\.com\.crt}, "$p/tls/cert.pem"],
        [qr{/etc/nginx/tls/registry\.example\.com\.key}, "$p/tls/key.pem"],
        [qr{/etc/nginx/registry-token\.key}, "$p/token.key"],
        [qr{/etc/nginx/registry-token\.pub}, "$p/token.pub"],
        [qr{/etc/nginx/registry\.htpasswd}, "$p/htpasswd"],
        [qr{https://registry\.example\.com/token}, "https://$host/token"],
        [qr{/var/lib/registry}, "$p/store"],
        [qr{^http \{}m, "http {\n    client_body_temp_path $p/body;\n"
             . "    proxy_temp_path $p/proxy;\n    fastcgi_temp_path $p/fastcgi;\n"
             . "    uwsgi_temp_path $p/uwsgi;\n    scgi_temp_path $p/scgi;\n"],
    );

    for my $s (@subst) {
        my ($re, $to) = @$s;
        ok($conf =~ s/$re/$to/g, "token-auth.conf has $re");
    }

    $conf =~ s/^\s*listen \[::\]:\d+.*\n//mg;
    spew("$p/nginx.conf", $conf);

    last unless nginx_t("$p/nginx.conf", $p, 'token-auth.conf');

    my $n = start_nginx("$p/nginx.conf", $p, $port);
    my $base = "https://$host";

    ($rc, $out) = curl('-k', '--http2', '-i', "$base/v2/");
    like($out, qr{^HTTP/2 401}, 'token-auth.conf: /v2/ wants a token');
    my ($challenge) = $out =~ /^www-authenticate: (.*?)\r?$/mi;
    is($challenge, "Bearer realm=\"https://$host/token\","
                   . 'service="registry.example.com"',
       'token-auth.conf: the challenge');

    my $scope = 'repository:alice/app:pull,push';
    ($rc, $out) = curl('-k', '--http2', '-u', 'alice:s3cret',
                       "$base/token?service=registry.example.com&scope=$scope");
    my $token = (json_decode($out) || {})->{token} // '';
    ok($token, 'token-auth.conf: alice gets a token');

    ($rc, $out) = curl('-k', '--http2', '-o', '/dev/null', '-w', '%{http_code}',
                       '-u', 'alice:wrong',
                       "$base/token?service=registry.example.com&scope=$scope");
    is($out, '401', 'token-auth.conf: a wrong password gets none');

    my $blob = "token blob\n";
    spew("$p/blob", $blob);
    my $d = RegTest::digest($blob);

    ($rc, $out) = curl('-k', '--http2', '-o', '/dev/null', '-w', '%{http_code}',
                       '-X', 'POST', '--data-binary', "\@$p/blob",
                       "$base/v2/alice/app/blobs/uploads/?digest=$d");
    is($out, '401', 'token-auth.conf: no push without a token');

    ($rc, $out) = curl('-k', '--http2', '-o', '/dev/null', '-w', '%{http_code}',
                       '-H', "Authorization: Bearer $token",
                       '-X', 'POST', '--data-binary', "\@$p/blob",
                       "$base/v2/alice/app/blobs/uploads/?digest=$d");
    is($out, '201', 'token-auth.conf: a push with the token');

    ($rc, $out) = curl('-k', '--http2', '-H', "Authorization: Bearer $token",
                       "$base/v2/alice/app/blobs/$d");
    is($out, $blob, 'token-auth.conf: a pull with the token');

    ($rc, $out) = curl('-k', '--http2', "$base/token?service=registry.example.com"
                       . "&scope=repository:alice/app:pull");
    my $anon = (json_decode($out) || {})->{token} // '';
    ($rc, $out) = curl('-k', '--http2', '-o', '/dev/null', '-w', '%{http_code}',
                       '-H', "Authorization: Bearer $anon",
                       "$base/v2/alice/app/blobs/$d");
    is($out, '401', 'token-auth.conf: anonymous tokens grant nothing');
    is_deeply((JWT::decode($anon))[1]{access}, [],
              "token-auth.conf: ... the anonymous token's access claim is empty");

    # the issuer's rules: a grant they refuse in part, and anonymous pulls
    # of public/**
    my $access = sub {
        my ($q, @cred) = @_;
        my ($rc, $out) = curl('-k', '--http2', @cred,
                              "$base/token?service=registry.example.com&$q");
        my $t = (json_decode($out) || {})->{token} // '';
        return $t ? (JWT::decode($t))[1]{access} : "no token: $out";
    };
    my $entry = sub { { type => 'repository', name => $_[0],
                        actions => [@_[1 .. $#_]] } };

    is_deeply($access->('scope=repository:alice/app:pull,push', '-u', 'bob:b0b'),
              [$entry->('alice/app', 'pull')],
              'token-auth.conf: bob asks to push alice/app: the token grants pull only');
    ($rc, $out) = curl('-k', '--http2', '-o', '/dev/null', '-w', '%{http_code}',
                       '-u', 'bob:b0b', "$base/token?service=registry.example.com"
                       . "&scope=repository:alice/app:pull,push");
    is($out, '200', '... an answer, not an error');
    is_deeply($access->('scope=repository:bob/app:pull,push,delete', '-u', 'bob:b0b'),
              [$entry->('bob/app', 'pull', 'push', 'delete')],
              'token-auth.conf: bob owns bob/**');
    is_deeply($access->('scope=repository:team-a/x:pull,push', '-u', 'alice:s3cret'),
              [$entry->('team-a/x', 'pull', 'push')],
              'token-auth.conf: alice pushes team-a/**');
    is_deeply($access->('scope=repository:team-a/x:pull,push', '-u', 'bob:b0b'),
              [$entry->('team-a/x', 'pull')],
              '... bob only pulls there');
    is_deeply($access->('scope=repository:public/x:pull,push'),
              [$entry->('public/x', 'pull')],
              'token-auth.conf: anonymous clients pull public/**, never push');
    is_deeply($access->('scope=registry:catalog:*'), [],
              '... and get no catalog');

    if (have('skopeo') && have('umoci')) {
        build_oci_image("$p/oci", 'latest');

        skopeo_ok('token-auth.conf: skopeo push with credentials',
                  'copy', '--dest-tls-verify=false', '--dest-creds',
                  'alice:s3cret', "oci:$p/oci:latest",
                  "docker://$host/alice/skopeo:v1");

        my ($src_rc) = skopeo('copy', '--src-tls-verify=false',
                              "docker://$host/alice/skopeo:v1",
                              "dir:$p/anon-pull");
        isnt($src_rc, 0, 'token-auth.conf: skopeo anonymous pull refused');

        skopeo_ok('token-auth.conf: skopeo pull with credentials',
                  'copy', '--src-tls-verify=false', '--src-creds',
                  'alice:s3cret', "docker://$host/alice/skopeo:v1",
                  "dir:$p/pulled-img");
    }

    stop_nginx($n);
    no_alerts("$p/logs/error.log", 'token-auth.conf');
}


###############################################################################
# metrics.conf and the registry-log-format.conf it includes

SKIP: {
    skip 'no curl', 1 unless have('curl');

    my $blob = "metrics example blob\n";
    spew("$tmp/metrics-blob", $blob);
    my $d = RegTest::digest($blob);

    my %files = ('registry-log-format.conf'
                 => slurp("$REPO/conf-examples/registry-log-format.conf"));

    run_example('metrics.conf', \%files, { 5000 => free_port() }, sub {
        my ($port) = @_;
        my $base = "http://127.0.0.1:$port->{5000}";

        my $r = curl_answer("$base/health");
        is("$r->{status} $r->{content}", qq{200 {"status":"ok"}\n},
           'metrics.conf: /health says ok');

        $r = curl_answer('-X', 'POST', '--data-binary', "\@$tmp/metrics-blob",
                         "$base/v2/ex/app/blobs/uploads/?digest=$d");
        is($r->{status}, 201, 'metrics.conf: a push');

        is(curl_answer("$base/v2/ex/app/blobs/$d")->{content}, $blob,
           'metrics.conf: a pull') for 1 .. 2;

        # counted once the answer has gone, by either worker
        for (1 .. 100) {
            $r = curl_answer("$base/metrics");
            last if $r->{content} =~ /operation="blob_pull",code="200"\} 2$/m;
            select undef, undef, undef, 0.05;
        }

        like($r->{content},
             qr/^registry_http_requests_total\{operation="blob_push",code="201"\} 1$/m,
             'metrics.conf: /metrics counts the push');
        like($r->{content},
             qr/^registry_http_requests_total\{operation="blob_pull",code="200"\} 2$/m,
             'metrics.conf: ... and the pulls');

        my $log = '';
        for (1 .. 100) {
            $log = slurp("$tmp/metrics.conf/log/registry.access.log");
            last if $log =~ / action=pull /;
            select undef, undef, undef, 0.05;
        }

        like($log,
             qr{^127\.0\.0\.1 "-" \[[^]]+\] "GET /v2/ex/app/blobs/\Q$d\E HTTP/1\.1" 200 \d+ in=\d+ t=[\d.]+ action=pull repo=ex/app ref=\Q$d\E digest=\Q$d\E error=- "curl/}m,
             'metrics.conf: the access log in the registry format');
    });
}

###############################################################################
# docker/nginx.conf: syntax and directives

{
    my $p = "$tmp/docker";
    make_path("$p/store", "$p/logs");

    my $conf = slurp("$REPO/docker/nginx.conf");
    $conf =~ s{^load_module \S+;}{load_module $MODULE;}m;
    $conf =~ s{^user root;}{user $USER;}m;
    $conf =~ s{^pid \S+;}{pid $p/nginx.pid;}m;
    $conf =~ s{/var/lib/registry}{$p/store}g;
    $conf =~ s/^http \{/http {\n    client_body_temp_path $p\/body;/m;
    spew("$p/nginx.conf", $conf);

    nginx_t("$p/nginx.conf", $p, 'docker/nginx.conf');
}

done_testing();
