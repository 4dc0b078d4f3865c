#!/usr/bin/perl

# The built-in token issuer (registry_token_server) and a registry that
# trusts it (a second nginx, as a fleet would):
# - GET ?service=&scope= anonymous and with Basic credentials (htpasswd:
#   bcrypt, apr1, SHA-512 crypt), the response fields, the token's header,
#   claims and signature (checked with openssl, ES256 and EdDSA);
# - refresh tokens: offline_token=true, the OAuth2 POST with the password
#   and refresh_token grants, refresh tokens refused by the registry;
# - the grant: what was asked, merged per repository, unknown scopes left
#   out; anonymous gets nothing where the issuer has no registry_access
#   rules (and, once they exist, what they allow);
# - credentials delegated to auth_request (registry_token_user);
# - the htpasswd check runs in a thread of the registry's pool;
# - the seeds' flow verbatim with curl, and skopeo pushing with --creds.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use JSON::PP;
use MIME::Base64 qw(encode_base64);

use lib 't/lib';
use RegTest;
use RegTools qw(run_cmd need_tools skopeo_ok build_oci_image);
use JWT;

my $dir = tempdir('issuer-XXXXXXXX', TMPDIR => 1,
                  CLEANUP => !$ENV{REGTEST_LEAVE});

my $SERVICE = 'test-registry';
my $ISSUER = 'test-issuer';

my $sign = JWT::genkey($dir, 'signing', 'p256');
my $sign_ed = JWT::genkey($dir, 'signing_ed', 'ed25519');

# alice: bcrypt (libcrypt's $2y$), bob: apr1, carol: SHA-512 crypt
my $bcrypt = crypt('secret', '$2y$05$abcdefghijklmnopqrstuu');
like($bcrypt, qr/^\$2y\$05\$/, 'a bcrypt hash for alice');

my $apr1 = JWT::openssl('passwd', '-apr1', 'hunter2');
my $sha512 = JWT::openssl('passwd', '-6', 'letmein');
chomp($apr1, $sha512);

RegTest::spew("$dir/htpasswd", "# users\nalice:$bcrypt\nbob:$apr1\n"
                               . "carol:$sha512:a comment\n");

sub issuer_location {
    my ($name, $key, $extra) = @_;
    return <<"EOF";
        location = $name {
            registry_token_server on;
            registry_token_signing_key $key;
            registry_token_issuer $ISSUER;
            registry_token_service $SERVICE;
            $extra
        }
EOF
}

my $DAVE = encode_base64('dave:davepass', '');

my $auth = RegTest->new(server_extra =>
    issuer_location('/token', $sign->{key},
                    "registry_token_users $dir/htpasswd;\n"
                    . "registry_token_expire 10m;")
    . issuer_location('/token-ed', $sign_ed->{key},
                      "registry_token_users $dir/htpasswd;")
    . issuer_location('/token-ar', $sign->{key},
                      "auth_request /auth;\n"
                      . 'registry_token_user $remote_user;')
    . issuer_location('/token-nobody', $sign->{key}, '')
    . <<"EOF");
        location = /auth {
            internal;
            if (\$http_authorization = "Basic $DAVE") {
                return 204;
            }
            return 401;
        }
EOF

my $REALM = 'http://127.0.0.1:' . $auth->port . '/token';

# the registry: another nginx that trusts both signing keys

my $store = "$dir/store";
my $open = RegTest->new(root => $store);
my $img = $open->push_image('lib/app', 'v1');
$open->stop;

my $reg = RegTest->new(root => $store, location_extra => <<"EOF");
            registry_token_realm $REALM;
            registry_token_service $SERVICE;
            registry_token_issuer $ISSUER;
            registry_token_keys $sign->{pub} $sign_ed->{pub};
EOF

sub basic {
    my ($user, $pass) = @_;
    return { Authorization => 'Basic ' . encode_base64("$user:$pass", '') };
}

sub get_token {
    my ($query, $headers, $path) = @_;
    return $auth->req('GET', ($path || '/token') . "?$query",
                      headers => $headers || {});
}

sub post_token {
    my ($form, $path) = @_;
    return $auth->req('POST', $path || '/token',
                      headers => { 'Content-Type' =>
                                       'application/x-www-form-urlencoded' },
                      content => $form);
}

sub json {
    my ($r) = @_;
    return eval { JSON::PP->new->decode($r->{content}) } || {};
}

sub repo {
    my ($name, @actions) = @_;
    return { type => 'repository', name => $name, actions => [@actions] };
}

###############################################################################
# GET, anonymous: a token that grants nothing (no registry_access rules)

{
    my $r = get_token("service=$SERVICE&scope=repository:lib/app:pull");
    is($r->{status}, 200, 'anonymous GET: 200');
    like($r->{headers}{'content-type'}, qr{^application/json}, 'JSON');
    is($r->{headers}{'cache-control'}, 'no-store', 'Cache-Control: no-store');

    my $j = json($r);
    ok($j->{token}, 'a token');
    is($j->{access_token}, $j->{token}, 'access_token is the token');
    is($j->{expires_in}, 600, 'expires_in: registry_token_expire');
    like($j->{issued_at} // '', qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/,
         'issued_at in RFC 3339');
    ok(!exists $j->{refresh_token}, 'no refresh token unasked');

    my ($h, $c) = JWT::decode($j->{token});
    is($h->{alg}, 'ES256', 'header: ES256');
    is($h->{typ}, 'JWT', 'header: typ JWT');
    is($h->{kid}, JWT::libtrust($sign), 'header: kid in libtrust form');
    ok(JWT::verify($sign, $j->{token}), 'openssl verifies the signature');

    is($c->{iss}, $ISSUER, 'claims: iss');
    is($c->{aud}, $SERVICE, 'claims: aud');
    is($c->{sub}, '', 'claims: sub is empty for anonymous');
    is_deeply($c->{access}, [], 'claims: anonymous gets nothing');
    is($c->{exp} - $c->{iat}, 600, 'claims: exp is iat + expire');
    ok(abs($c->{iat} - time) < 30, 'claims: iat is now');
    ok($c->{jti}, 'claims: a jti');

    my $again = json(get_token("service=$SERVICE"));
    isnt((JWT::decode($again->{token}))[1]{jti}, $c->{jti},
         'every token has its own jti');

    $r = get_token('scope=repository:lib/app:pull');
    is($r->{status}, 200, 'no service: the configured one');
    is((JWT::decode(json($r)->{token}))[1]{aud}, $SERVICE, 'aud: it');

    $r = get_token('service=other-registry');
    is($r->{status}, 403, 'another service: 403');
    is(RegTest::error_code($r), 'DENIED', 'another service: DENIED');
}

###############################################################################
# GET with Basic credentials

{
    my $r = get_token("service=$SERVICE&scope=repository:lib/app:pull,push"
                      . "&scope=registry:catalog:*"
                      . "&scope=repository:lib/app:delete"
                      . '&scope=repository:lib/b:pull%20repository:lib/c:push'
                      . '&scope=repository:lib/d:pull,fly'
                      . '&scope=repository:Bad/Name:pull'
                      . '&scope=repository:host:5000/lib/e:pull'
                      . '&scope=namespace:lib:pull',
                      basic('alice', 'secret'));
    is($r->{status}, 200, 'alice (bcrypt): 200');

    my ($h, $c) = JWT::decode(json($r)->{token});
    is($c->{sub}, 'alice', 'alice: sub');
    is_deeply($c->{access}, [
        repo('lib/app', 'pull', 'push', 'delete'),
        { type => 'registry', name => 'catalog', actions => ['*'] },
        repo('lib/b', 'pull'),
        repo('lib/c', 'push'),
        repo('lib/d', 'pull'),
    ], 'alice: what she asked, merged per repository, the unknown left out');

    $r = get_token("service=$SERVICE&scope=repository:lib/app:*",
                   basic('alice', 'secret'));
    is_deeply((JWT::decode(json($r)->{token}))[1]{access},
              [repo('lib/app', 'pull', 'push', 'delete')],
              '"*" is every repository action');

    $r = get_token("service=$SERVICE", basic('alice', 'wrong'));
    is($r->{status}, 401, 'wrong password: 401');
    is(RegTest::error_code($r), 'UNAUTHORIZED', 'wrong password: UNAUTHORIZED');
    is($r->{headers}{'www-authenticate'}, 'Basic realm="registry token"',
       'wrong password: a Basic challenge');
    like($auth->error_log, qr/wrong password, or no user "alice"/,
         'wrong password: logged');

    $r = get_token("service=$SERVICE", basic('mallory', 'secret'));
    is($r->{status}, 401, 'unknown user: 401');

    $r = get_token("service=$SERVICE", basic('# users', 'x'));
    is($r->{status}, 401, 'a comment line is no user');

    $r = get_token("service=$SERVICE&scope=repository:x:pull",
                   basic('bob', 'hunter2'));
    is($r->{status}, 200, 'bob (apr1): 200');
    is((JWT::decode(json($r)->{token}))[1]{sub}, 'bob', 'bob: sub');

    $r = get_token("service=$SERVICE", basic('carol', 'letmein'));
    is($r->{status}, 200, 'carol (SHA-512 crypt, a comment field): 200');

    $r = get_token("service=$SERVICE", basic('carol', 'letmeout'));
    is($r->{status}, 401, 'carol, wrong password: 401');

    $r = get_token("service=$SERVICE", basic('alice', 'secret'),
                   '/token-nobody');
    is($r->{status}, 401, 'an issuer without users: credentials refused');
    is(RegTest::error_code($r), 'UNAUTHORIZED', '... UNAUTHORIZED');

    $r = get_token("service=$SERVICE", {}, '/token-nobody');
    is($r->{status}, 200, 'an issuer without users: anonymous tokens');
}

###############################################################################
# the htpasswd check ran in a thread of the pool (at nice 19, as every
# registry task), never in the event loop

sub niced_threads {
    my ($t) = @_;
    my $n = 0;

    for my $pid ($t->pids_of_workers) {
        opendir(my $dh, "/proc/$pid/task") or next;
        for my $tid (grep { /^\d+$/ } readdir $dh) {
            my $stat = RegTest::slurp("/proc/$pid/task/$tid/stat");
            my @f = split ' ', ($stat =~ /\)\s(.*)/s)[0] // '';
            $n++ if ($f[16] // 0) == 19;
        }
        closedir $dh;
    }

    return $n;
}

ok(niced_threads($auth) >= 1, 'the login ran in a thread pool task');

{
    my $inline = RegTest->new(http_extra => 'registry_thread_pool off;',
                              server_extra => issuer_location('/token',
                                  $sign->{key},
                                  "registry_token_users $dir/htpasswd;"));

    my $r = $inline->req('GET', "/token?service=$SERVICE",
                         headers => basic('alice', 'secret'));
    is($r->{status}, 200, 'registry_thread_pool off: the login works');
    is(niced_threads($inline), 0, 'registry_thread_pool off: no thread');

    $inline->stop;
}

###############################################################################
# refresh tokens

my $refresh;

{
    my $r = get_token("service=$SERVICE&offline_token=true&client_id=test",
                      basic('alice', 'secret'));
    my $j = json($r);
    $refresh = $j->{refresh_token};
    ok($refresh, 'offline_token=true: a refresh token');

    my ($h, $c) = JWT::decode($refresh);
    is($h->{typ}, 'refresh+jwt', 'refresh token: its own typ');
    is($c->{sub}, 'alice', 'refresh token: sub');
    is($c->{aud}, $SERVICE, 'refresh token: aud');
    ok(!exists $c->{access}, 'refresh token: no access');
    ok(JWT::verify($sign, $refresh), 'refresh token: signed');

    $r = get_token("service=$SERVICE&offline_token=true&client_id=test");
    ok(!exists json($r)->{refresh_token}, 'anonymous: no refresh token');

    $r = get_token("service=$SERVICE&refresh_token=made-up",
                   basic('alice', 'secret'));
    is($r->{status}, 200, 'a GET with a refresh_token argument: 200');
    ok(!exists json($r)->{refresh_token},
       'a GET never echoes a refresh_token it was given');

    $r = post_token("grant_type=refresh_token&refresh_token=$refresh"
                    . "&service=$SERVICE&client_id=test"
                    . '&scope=repository:lib/app:pull,push');
    is($r->{status}, 200, 'refresh grant: 200');
    $j = json($r);
    is($j->{refresh_token}, $refresh, 'refresh grant: the same refresh token');
    is($j->{scope}, 'repository:lib/app:pull,push', 'refresh grant: scope');
    is($j->{expires_in}, 600, 'refresh grant: expires_in');
    ($h, $c) = JWT::decode($j->{access_token});
    is($c->{sub}, 'alice', 'refresh grant: the token is alice\'s');
    is_deeply($c->{access}, [repo('lib/app', 'pull', 'push')],
              'refresh grant: access');

    my ($rh, $rp, $rs) = split /\./, $refresh;
    my $raw = JWT::b64url_decode($rs);
    substr($raw, 5, 1) = chr(ord(substr($raw, 5, 1)) ^ 0x80);
    $r = post_token("grant_type=refresh_token&service=$SERVICE"
                    . "&refresh_token=$rh.$rp." . JWT::b64url($raw));
    is($r->{status}, 401, 'a tampered refresh token: 401');

    $r = post_token("grant_type=refresh_token&service=$SERVICE"
                    . "&refresh_token=" . json(get_token("service=$SERVICE",
                                              basic('alice', 'secret')))->{token});
    is($r->{status}, 401, 'an access token as refresh token: 401');
    like($auth->error_log, qr/refresh token refused: wrong typ/,
         'an access token as refresh token: wrong typ');

    my $forged = JWT::token(key => JWT::genkey($dir, 'forger', 'p256'),
                            alg => 'ES256', kid => JWT::libtrust($sign),
                            header => { typ => 'refresh+jwt' },
                            claims => JWT::claims(sub => 'admin',
                                                  iss => $ISSUER,
                                                  aud => $SERVICE));
    $r = post_token("grant_type=refresh_token&service=$SERVICE"
                    . "&refresh_token=$forged");
    is($r->{status}, 401, 'a forged refresh token: 401');

    $r = post_token('grant_type=refresh_token&service=other'
                    . "&refresh_token=$refresh");
    is($r->{status}, 403, 'refresh token for another service: 403');

    # a refresh token is never a Bearer token for the registry
    $r = $reg->req('GET', '/v2/', headers => {
        Authorization => "Bearer $refresh" });
    is($r->{status}, 401, 'the registry refuses a refresh token');
    like($r->{headers}{'www-authenticate'}, qr/error="invalid_token"/,
         'the registry: invalid_token');
}

###############################################################################
# the OAuth2 POST, password grant

{
    my $r = post_token('grant_type=password&username=alice&password=secret'
                       . "&service=$SERVICE&client_id=test&access_type=offline"
                       . '&scope=repository:lib/app:pull+registry:catalog:*');
    is($r->{status}, 200, 'password grant: 200');
    my $j = json($r);
    ok($j->{access_token}, 'password grant: access_token');
    ok($j->{refresh_token}, 'password grant: access_type=offline, a refresh '
                            . 'token');
    is($j->{scope}, 'repository:lib/app:pull registry:catalog:*',
       'password grant: the scope granted, "+" a space');
    is((JWT::decode($j->{access_token}))[1]{sub}, 'alice',
       'password grant: sub');

    $r = post_token('grant_type=password&username=alice&password=nope'
                    . "&service=$SERVICE&client_id=test");
    is($r->{status}, 401, 'password grant, wrong password: 401');

    $r = post_token("grant_type=password&service=$SERVICE&client_id=test");
    is($r->{status}, 401, 'password grant without a username: 401');

    $r = post_token('grant_type=password&username=alice&password=secret'
                    . "&service=$SERVICE&client_id=test");
    ok(!exists json($r)->{refresh_token}, 'online: no refresh token');

    $r = post_token("grant_type=authorization_code&service=$SERVICE");
    is($r->{status}, 405, 'another grant type: 405 (clients fall back to GET)');

    $r = post_token('x' x 20000);
    is($r->{status}, 413, 'a form too large: 413');

    $r = $auth->req('PUT', '/token', content => 'x');
    is($r->{status}, 405, 'PUT: 405');
}

###############################################################################
# credentials checked by the access phase (auth_request)

{
    my $r = get_token("service=$SERVICE&scope=repository:dave/x:push",
                      { Authorization => "Basic $DAVE" }, '/token-ar');
    is($r->{status}, 200, 'auth_request accepts: 200');
    my ($h, $c) = JWT::decode(json($r)->{token});
    is($c->{sub}, 'dave', 'registry_token_user $remote_user: sub');
    is_deeply($c->{access}, [repo('dave/x', 'push')], 'dave: access');

    $r = get_token("service=$SERVICE", basic('dave', 'wrong'), '/token-ar');
    is($r->{status}, 401, 'auth_request refuses: 401');
}

###############################################################################
# EdDSA

{
    my $r = get_token("service=$SERVICE&scope=repository:lib/app:pull",
                      basic('alice', 'secret'), '/token-ed');
    my $token = json($r)->{token};
    my ($h) = JWT::decode($token);
    is($h->{alg}, 'EdDSA', 'Ed25519 signing key: EdDSA');
    is($h->{kid}, JWT::libtrust($sign_ed), 'EdDSA: kid');
    ok(JWT::verify($sign_ed, $token), 'EdDSA: openssl verifies');

    $r = $reg->req('GET', '/v2/lib/app/manifests/v1',
                   headers => { Authorization => "Bearer $token",
                                Accept => $img->{type} });
    is($r->{status}, 200, 'EdDSA: the registry accepts it');
}

###############################################################################
# the registry with the issuer's tokens

{
    my $anon = json(get_token("service=$SERVICE"
                              . '&scope=repository:lib/app:pull'))->{token};
    my $r = $reg->req('GET', '/v2/lib/app/manifests/v1',
                      headers => { Authorization => "Bearer $anon",
                                   Accept => $img->{type} });
    is($r->{status}, 401, 'an anonymous token grants no pull here');
    like($r->{headers}{'www-authenticate'}, qr/error="insufficient_scope"/,
         '... insufficient_scope');

    $r = $reg->req('GET', '/v2/', headers => { Authorization => "Bearer $anon" });
    is($r->{status}, 200, 'an anonymous token: /v2/');

    my $push = json(get_token("service=$SERVICE"
                              . '&scope=repository:team/x:pull,push',
                              basic('alice', 'secret')))->{token};
    my $blob = 'pushed with a token ' . rand();
    my $d = RegTest::digest($blob);

    $r = $reg->req('POST', "/v2/team/x/blobs/uploads/?digest=$d",
                   headers => { Authorization => "Bearer $push" },
                   content => $blob);
    is($r->{status}, 201, 'alice pushes with her token');

    $r = $reg->req('GET', "/v2/team/x/blobs/$d",
                   headers => { Authorization => "Bearer $push" });
    is($r->{content}, $blob, 'and pulls it back');

    $r = $reg->req('POST', '/v2/team/y/blobs/uploads/',
                   headers => { Authorization => "Bearer $push" });
    is($r->{status}, 401, 'her token is for team/x only');
}

###############################################################################
# the seeds' token flow, verbatim with curl

SKIP: {
    skip 'no curl', 6 unless grep { -x "$_/curl" } split /:/, $ENV{PATH};

    my $R = 'http://127.0.0.1:' . $reg->port;

    my ($rc, $out) = run_cmd(['curl', '-si', "$R/v2/"]);
    like($out, qr/^HTTP\/1\.1 401/, 'curl: GET /v2/ -> 401');

    my ($challenge) = $out =~ /^www-authenticate: (.*?)\r?$/mi;
    my %p = ($challenge // '') =~ /(\w+)="([^"]*)"/g;
    is($p{realm}, $REALM, 'curl: the challenge names the realm');
    is($p{service}, $SERVICE, 'curl: and the service');

    ($rc, $out) = run_cmd(['curl', '-si', "$R/v2/lib/app/manifests/v1"]);
    ($challenge) = $out =~ /^www-authenticate: (.*?)\r?$/mi;
    %p = ($challenge // '') =~ /(\w+)="([^"]*)"/g;
    is($p{scope}, 'repository:lib/app:pull', 'curl: and the scope');

    ($rc, $out) = run_cmd(['curl', '-s', '-u', 'alice:secret',
                           "$p{realm}?service=$p{service}&scope=$p{scope}"]);
    my $token = eval { JSON::PP->new->decode($out)->{token} } // '';

    ($rc, $out) = run_cmd(['curl', '-s', '-H', "Authorization: Bearer $token",
                           '-H', "Accept: $img->{type}",
                           "$R/v2/lib/app/manifests/v1"]);
    is($out, $img->{manifest}, 'curl: the manifest with the Bearer token');

    ($rc, $out) = run_cmd(['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}',
                           '-H', "Authorization: Bearer $token", '-X', 'POST',
                           "$R/v2/lib/app/blobs/uploads/"]);
    is($out, '401', 'curl: the pull token does not push');
}

###############################################################################
# skopeo: a real client through the challenge, the issuer and the registry

SKIP: {
    skip 'no skopeo or umoci', 3
        unless grep { -x "$_/skopeo" } split /:/, $ENV{PATH}
        and grep { -x "$_/umoci" } split /:/, $ENV{PATH};

    my $src = build_oci_image("$dir/oci", 'latest');
    my $R = '127.0.0.1:' . $reg->port;

    skopeo_ok('skopeo copy with --dest-creds through token auth',
              'copy', '--dest-tls-verify=false', '--dest-creds',
              'alice:secret', "oci:$dir/oci:latest", "docker://$R/sk/img:v1");

    skopeo_ok('skopeo inspect with --creds', 'inspect', '--tls-verify=false',
              '--creds', 'alice:secret', "docker://$R/sk/img:v1");

    my ($rc) = RegTools::skopeo('inspect', '--tls-verify=false',
                                "docker://$R/sk/img:v1");
    isnt($rc, 0, 'skopeo inspect without credentials is refused');
}

###############################################################################
# registry_access rules of the issuer's location (main's access.c): the
# grant is what they allow; anonymous gets what "anonymous" rules say

SKIP: {
    my $d = tempdir('rules-XXXXXXXX', DIR => $dir);
    RegTest::spew("$d/nginx.conf", "load_module $RegTest::MODULE;\n"
        . "error_log $d/error.log;\npid $d/nginx.pid;\nevents {\n}\n"
        . "http {\n server {\n  listen 127.0.0.1:1;\n  location / {\n"
        . "   registry_access anonymous public/* pull;\n  }\n }\n}\n");
    my ($rc) = run_cmd([$RegTest::NGINX, '-t', '-p', "$d/", '-c',
                        "$d/nginx.conf", '-e', "$d/error.log"],
                       env => { RegTest::nginx_env($d) });

    skip 'this build has no registry_access rules', 4 if $rc != 0;

    my $ruled = RegTest->new(server_extra => issuer_location('/token',
        $sign->{key}, "registry_token_users $dir/htpasswd;\n"
        . "registry_access anonymous public/* pull;\n"
        . "registry_access alice team/** push;\n"
        . 'registry_access * ${user}/** *;'));

    my $access = sub {
        my ($q, $h) = @_;
        my $r = $ruled->req('GET', "/token?service=$SERVICE&$q",
                            headers => $h || {});
        return (JWT::decode(json($r)->{token} // ''))[1]{access};
    };

    is_deeply($access->('scope=repository:public/x:pull,push'),
              [repo('public/x', 'pull')], 'rules: anonymous pulls public/*');
    is_deeply($access->('scope=repository:team/a/b:pull,push,delete',
                        basic('alice', 'secret')),
              [repo('team/a/b', 'pull', 'push')], 'rules: alice pushes team/**');
    is_deeply($access->('scope=repository:bob/x:*', basic('bob', 'hunter2')),
              [repo('bob/x', 'pull', 'push', 'delete')], 'rules: ${user}/**');
    is_deeply($access->('scope=repository:team/a:pull', basic('bob', 'hunter2')),
              [], 'rules: bob gets nothing of team/');

    $ruled->stop;
}

$reg->stop;
$auth->stop;

done_testing();
