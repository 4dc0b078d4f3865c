#!/usr/bin/perl

# The $registry_* variables in an access log: a push (monolithic and
# chunked), a manifest push and pulls, a mount, a delete, listings,
# refusals, errors, an unknown route, a token from the issuer and a
# request the registry never saw each leave exactly the line expected:
# operation, action, repository, reference, digest, error code and user
# ("-" where a request has none).  The user is what registry_access
# decided for (registry_user from a header), the issuer's for a token,
# and $remote_user under auth_basic in a location without rules.  Also
# the ready format, conf-examples/registry-log-format.conf, logs them.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use MIME::Base64 qw(encode_base64);
use JSON::PP;

use lib 't/lib';
use RegTest;
use JWT;

my $dir = tempdir('logvars-XXXXXXXX', TMPDIR => 1,
                  CLEANUP => !$ENV{REGTEST_LEAVE});

my $sign = JWT::genkey($dir, 'signing', 'p256');
my $bcrypt = crypt('secret', '$2y$05$abcdefghijklmnopqrstuu');
like($bcrypt, qr/^\$2y\$05\$/, 'a bcrypt hash for alice');
RegTest::spew("$dir/htpasswd", "alice:$bcrypt\n");

my $VARS = '$registry_operation|$registry_action|$registry_repository|'
         . '$registry_reference|$registry_digest|$registry_error|'
         . '$registry_user';

my $format = RegTest::slurp("$RegTest::REPO/conf-examples/"
                            . 'registry-log-format.conf');
like($format, qr/^log_format registry /m,
     'registry-log-format.conf defines log_format registry');

my $t = RegTest->new(
    delete => 1,
    http_extra => "log_format vars '\$request_method \$status $VARS';\n"
                  . $format,
    server_extra => <<"EOF",
        access_log vars.log vars;
        access_log registry.log registry;

        location = /token {
            registry_token_server on;
            registry_token_signing_key $sign->{key};
            registry_token_issuer logvars-issuer;
            registry_token_service logvars;
            registry_token_users $dir/htpasswd;
        }

        location = /plain {
            return 200 "not the registry\\n";
        }
EOF
    location_extra => <<'EOF');
            registry_user $http_x_user;
            registry_access alice     **         *;
            registry_access anonymous public/**  pull;
EOF

my %alice = (headers => { 'X-User' => 'alice' });
my $offset = 0;

# the $n lines logged since the last call: a line is written once the
# answer has gone, so it may come a moment after the client has it
sub logged {
    my ($n, $file, $from) = @_;
    $file //= $t->dir . '/vars.log';
    $from //= \$offset;

    my @lines;

    for (1 .. 100) {
        my $log = RegTest::slurp($file);
        @lines = split /\n/, substr($log, $$from);
        if (@lines >= $n) {
            $$from = length $log;
            last;
        }
        select undef, undef, undef, 0.05;
    }

    return \@lines;
}

sub line { join '|', @_ }

# ---- pushes ----

my $blob = 'a layer for the log';
my $d = RegTest::digest($blob);

my $r = $t->req('POST', "/v2/alice/app/blobs/uploads/?digest=$d",
                content => $blob, %alice);
is($r->{status}, 201, 'monolithic push');
is_deeply(logged(1), [ 'POST 201 ' . line('blob_push', 'push', 'alice/app',
                                         '-', $d, '-', 'alice') ],
          'monolithic push: the digest it stored');

my $chunked = 'chunked layer';
my $dc = RegTest::digest($chunked);

$r = $t->req('POST', '/v2/alice/app/blobs/uploads/', %alice);
is($r->{status}, 202, 'session');
my $id = $r->{headers}{'docker-upload-uuid'};
$r = $t->req('PATCH', $r->{headers}{location},
             headers => { 'X-User' => 'alice', 'Content-Range' => '0-6' },
             content => 'chunked');
is($r->{status}, 202, 'a chunk');
$r = $t->req('PUT', "$r->{headers}{location}?digest=$dc",
             content => ' layer', %alice);
is($r->{status}, 201, 'committed');

is_deeply(logged(3), [
    'POST 202 ' . line('blob_push', 'push', 'alice/app', '-', '-', '-',
                       'alice'),
    'PATCH 202 ' . line('blob_push', 'push', 'alice/app', $id, '-', '-',
                        'alice'),
    'PUT 201 ' . line('blob_push', 'push', 'alice/app', $id, $dc, '-',
                      'alice'),
], 'chunked push: the session id, then the digest');

# ---- manifests ----

my $config = '{"architecture":"amd64","os":"linux"}';
my $dcfg = RegTest::digest($config);
is($t->req('POST', "/v2/alice/app/blobs/uploads/?digest=$dcfg",
           content => $config, %alice)->{status}, 201, 'config');
logged(1);

my $manifest = JSON::PP->new->canonical->encode({
    schemaVersion => 2,
    mediaType => 'application/vnd.oci.image.manifest.v1+json',
    config => { mediaType => 'application/vnd.oci.image.config.v1+json',
                digest => $dcfg, size => length $config },
    layers => [ { mediaType => 'application/vnd.oci.image.layer.v1.tar',
                  digest => $d, size => length $blob } ],
});
my $dm = RegTest::digest($manifest);

$r = $t->req('PUT', '/v2/alice/app/manifests/v1',
             headers => { 'X-User' => 'alice', 'Content-Type'
                          => 'application/vnd.oci.image.manifest.v1+json' },
             content => $manifest);
is($r->{status}, 201, 'manifest push');
is($t->req('GET', '/v2/alice/app/manifests/v1', %alice)->{status}, 200,
   'manifest pull by tag');
is($t->req('HEAD', "/v2/alice/app/manifests/$dm", %alice)->{status}, 200,
   'manifest HEAD by digest');

is_deeply(logged(3), [
    'PUT 201 ' . line('manifest_push', 'push', 'alice/app', 'v1', $dm, '-',
                      'alice'),
    'GET 200 ' . line('manifest_pull', 'pull', 'alice/app', 'v1', $dm, '-',
                      'alice'),
    'HEAD 200 ' . line('manifest_pull', 'pull', 'alice/app', $dm, $dm, '-',
                       'alice'),
], 'manifests: the digest a tag named');

# ---- pulls, a mount, listings, deletes ----

is($t->req('GET', "/v2/alice/app/blobs/$d", %alice)->{content}, $blob,
   'blob pull');
is($t->req('POST', "/v2/alice/copy/blobs/uploads/?mount=$d&from=alice/app",
           %alice)->{status}, 201, 'mount');
is($t->req('GET', '/v2/alice/app/tags/list', %alice)->{status}, 200, 'tags');
is($t->req('GET', '/v2/_catalog', %alice)->{status}, 200, 'catalog');
is($t->req('GET', "/v2/alice/app/referrers/$dm", %alice)->{status}, 200,
   'referrers');
is($t->req('GET', '/v2/', %alice)->{status}, 200, 'base');
is($t->req('DELETE', "/v2/alice/copy/blobs/$d", %alice)->{status}, 202,
   'blob delete');
is($t->req('DELETE', '/v2/alice/app/manifests/v1', %alice)->{status}, 202,
   'tag delete');

is_deeply(logged(8), [
    'GET 200 ' . line('blob_pull', 'pull', 'alice/app', $d, $d, '-', 'alice'),
    'POST 201 ' . line('mount', 'mount', 'alice/copy', '-', $d, '-', 'alice'),
    'GET 200 ' . line('tags', 'list', 'alice/app', '-', '-', '-', 'alice'),
    'GET 200 ' . line('catalog', 'list', '-', '-', '-', '-', 'alice'),
    'GET 200 ' . line('referrers', 'list', 'alice/app', $dm, $dm, '-',
                      'alice'),
    'GET 200 ' . line('base', 'check', '-', '-', '-', '-', 'alice'),
    'DELETE 202 ' . line('blob_delete', 'delete', 'alice/copy', $d, $d, '-',
                         'alice'),
    'DELETE 202 ' . line('manifest_delete', 'delete', 'alice/app', 'v1', '-',
                         '-', 'alice'),
], 'pull, mount, listings, deletes');

# ---- refusals and errors ----

my $unknown = RegTest::digest('not there');

$t->req('GET', "/v2/alice/app/blobs/$unknown", %alice);
$t->req('POST', '/v2/alice/app/blobs/uploads/',
        headers => { 'X-User' => 'bob' });
$t->req('POST', '/v2/alice/app/blobs/uploads/');
$t->req('POST', "/v2/alice/copy/blobs/uploads/?mount=$d&from=alice/app",
        headers => { 'X-User' => 'bob' });
$t->req('GET', '/v2/public/app/manifests/latest');
$t->req('GET', '/v2/alice/app/nothing/here', %alice);
$t->req('GET', '/v2/Alice/tags/list', %alice);
$t->req('PUT', "/v2/alice/app/blobs/uploads/?digest=$d", %alice);

is_deeply(logged(8), [
    'GET 404 ' . line('blob_pull', 'pull', 'alice/app', $unknown, $unknown,
                      'BLOB_UNKNOWN', 'alice'),
    'POST 403 ' . line('blob_push', 'push', 'alice/app', '-', '-', 'DENIED',
                       'bob'),
    'POST 401 ' . line('blob_push', 'push', 'alice/app', '-', '-',
                       'UNAUTHORIZED', '-'),
    'POST 403 ' . line('mount', 'mount', 'alice/copy', '-', '-', 'DENIED',
                       'bob'),
    'GET 404 ' . line('manifest_pull', 'pull', 'public/app', 'latest', '-',
                      'MANIFEST_UNKNOWN', '-'),
    'GET 404 ' . line('other', '-', '-', '-', '-', 'NOT_FOUND', 'alice'),
    'GET 400 ' . line('other', '-', '-', '-', '-', 'NAME_INVALID', 'alice'),
    'PUT 405 ' . line('other', '-', '-', '-', '-', 'UNSUPPORTED', 'alice'),
], 'errors: the spec code; refusals: who was refused');

# ---- the issuer, and a request the registry never saw ----

my $basic = 'Basic ' . encode_base64('alice:secret', '');

$r = $t->req('GET', '/token?service=logvars&scope=repository:alice/app:pull',
             headers => { Authorization => $basic });
is($r->{status}, 200, 'a token for alice');
$r = $t->req('GET', '/token?service=logvars',
             headers => { Authorization => 'Basic '
                          . encode_base64('alice:wrong', '') });
is($r->{status}, 401, 'a wrong password');
is($t->req('GET', '/plain')->{status}, 200, 'not the registry');

is_deeply(logged(3), [
    'GET 200 ' . line('token', 'token', '-', '-', '-', '-', 'alice'),
    'GET 401 ' . line('token', 'token', '-', '-', '-', 'UNAUTHORIZED', '-'),
    'GET 200 ' . line('-', '-', '-', '-', '-', '-', '-'),
], 'the issuer names whom the token is for; elsewhere nothing');

# ---- the ready format ----

my @reg = split /\n/, RegTest::slurp($t->dir . '/registry.log');
my ($put) = grep { m{"PUT /v2/alice/app/manifests/v1 } } @reg;

like($put // '', qr{^127\.0\.0\.1 "alice" \[[^]]+\] "PUT /v2/alice/app/manifests/v1 HTTP/1\.1" 201 \d+ in=\d+ t=[\d.]+ action=push repo=alice/app ref=v1 digest=\Q$dm\E error=- "[^"]*"$},
     'log_format registry: who pushed what');

my ($denied) = grep { / 403 / } @reg;
like($denied // '', qr{"bob" .* 403 .* action=push repo=alice/app ref=- digest=- error=DENIED },
     'log_format registry: who was refused what');

$t->stop;

# ---- $registry_user from auth_basic, in a location without rules ----

my $b = RegTest->new(
    http_extra => "log_format vars '\$status $VARS';",
    server_extra => 'access_log vars.log vars;',
    location_extra => <<"EOF");
            auth_basic registry;
            auth_basic_user_file $dir/htpasswd;
EOF

is($b->req('GET', '/v2/', headers => { Authorization => $basic })->{status},
   200, 'auth_basic: alice');
is($b->req('GET', '/v2/')->{status}, 401, 'auth_basic: no credentials');

my $from = 0;
is_deeply(logged(2, $b->dir . '/vars.log', \$from), [
    '200 ' . line('base', 'check', '-', '-', '-', '-', 'alice'),
    '401 ' . line('other', '-', '-', '-', '-', 'UNAUTHORIZED', '-'),
], "no rules: registry_user's default, \$remote_user, after auth_basic");

$b->stop;

done_testing();
