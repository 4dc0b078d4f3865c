#!/usr/bin/perl

# Docker token authentication on the registry's side (registry_token_*):
# - without a token, 401 with the challenge naming exactly what the
#   request needs (one repository, both of a mount, the catalog, nothing
#   for /v2/);
# - the JWT attack catalogue, each refused with 401, the challenge with
#   error="invalid_token" (or "insufficient_scope") and, in error.log, the
#   reason it was refused for;
# - every algorithm accepted with the right key, kid in both forms, no kid,
#   JWKS and certificate key files, x5c chains;
# - the cache: 50 requests with one token verify one signature;
# - pushes, pulls, mounts, deletes and the catalog through the registry
#   with tokens.
# Keys and certificates are made at test time with the openssl CLI, and
# tokens minted with it (t/lib/JWT.pm).

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use JSON::PP;
use MIME::Base64 ();

use lib 't/lib';
use RegTest;
use RegTools qw(run_cmd);
use JWT;

my $dir = tempdir('token-XXXXXXXX', TMPDIR => 1,
                  CLEANUP => !$ENV{REGTEST_LEAVE});

my $REALM = 'https://auth.example/token';
my $SERVICE = 'test-registry';
my $ISSUER = 'test-issuer';

###############################################################################
# keys

my %k = map { $_ => JWT::genkey($dir, $_, $_) } qw(rsa p256 p384 p521 ed25519);

my $attacker = JWT::genkey($dir, 'attacker', 'p256');

# a JWKS: an EC key bound to ES256 by its "alg", an RSA key, own kids
my $jwks_ec = JWT::genkey($dir, 'jwks_ec', 'p256');
my $jwks_rsa = JWT::genkey($dir, 'jwks_rsa', 'rsa');

RegTest::spew("$dir/keys.jwks", JSON::PP->new->encode({ keys => [
    { %{ JWT::jwk($jwks_ec) }, kid => 'ec-by-name', alg => 'ES256',
      use => 'sig' },
    { %{ JWT::jwk($jwks_rsa) }, kid => 'rsa-by-name' },
] }));

# certificates: root -> intermediate -> leaf; a rogue root with its leaf
my $root = JWT::cert($dir, 'root', undef, ca => 1);
my $int = JWT::cert($dir, 'int', $root, ca => 1);
my $leaf = JWT::cert($dir, 'leaf', $int);
my $rogue = JWT::cert($dir, 'rogue', undef, ca => 1);
my $rogue_leaf = JWT::cert($dir, 'rogue_leaf', $rogue);

my $keys = join ' ', (map { $k{$_}{pub} } sort keys %k), "$dir/keys.jwks",
                     $root->{pem};

###############################################################################
# a store with an image, pushed without authentication

my $store = "$dir/store";

my $open = RegTest->new(root => $store);
my $img = $open->push_image('lib/app', 'v1');
my $other = $open->push_image('lib/other', 'v1');
$open->stop;

my $t = RegTest->new(root => $store, delete => 1,
                     server_extra => 'large_client_header_buffers 4 16k;',
                     location_extra => <<"EOF");
            registry_token_realm $REALM;
            registry_token_service $SERVICE;
            registry_token_issuer $ISSUER;
            registry_token_keys $keys;
EOF

my $MANIFEST = '/v2/lib/app/manifests/v1';

sub access {
    return [ map {
        my ($type, $name, $actions) = /^([^:]+):(.*):([^:]*)$/;
        { type => $type, name => $name, actions => [split /,/, $actions] }
    } @_ ];
}

# a token of the p256 key (kid in libtrust form) granting @scope
sub tok {
    my (%o) = @_;
    my $k = $o{key} || $k{p256};
    return JWT::token(key => $k, alg => $o{alg} || 'ES256',
                      kid => exists $o{kid} ? $o{kid} : JWT::libtrust($k),
                      header => $o{header},
                      claims => JWT::claims(access => access(@{ $o{scope}
                                               || ['repository:lib/app:pull'] }),
                                            %{ $o{claims} || {} }));
}

sub with {
    my ($token, $method, $path, %h) = @_;
    return $t->req($method, $path, headers => {
        ($token ? (Authorization => "Bearer $token") : ()),
        Accept => $img->{type}, %h,
    });
}

sub challenge {
    my ($scope, $error) = @_;
    return "Bearer realm=\"$REALM\",service=\"$SERVICE\""
           . ($scope ? ",scope=\"$scope\"" : '')
           . ($error ? ",error=\"$error\"" : '');
}

# what error.log gained from $code
sub logged {
    my ($code) = @_;
    my $before = length $t->error_log;
    my $r = $code->();
    return ($r, substr($t->error_log, $before));
}

# 401, the challenge, the JSON error, and why in error.log
sub refused {
    my ($name, $r, $log, $scope, $error, $why) = @_;

    is($r->{status}, 401, "$name: 401");
    is($r->{headers}{'www-authenticate'}, challenge($scope, $error),
       "$name: challenge");
    is(RegTest::error_code($r), 'UNAUTHORIZED', "$name: UNAUTHORIZED");

    like($log, qr/registry token: \Q$why\E/, "$name: refused for: $why")
        if defined $why;
}

###############################################################################
# no token: the challenge names what the request needs

{
    my $r = with(undef, 'GET', '/v2/');
    refused('/v2/ without a token', $r, '', undef, undef);

    $r = with(undef, 'GET', $MANIFEST);
    refused('pull without a token', $r, '', 'repository:lib/app:pull', undef);

    $r = with(undef, 'HEAD', "/v2/lib/app/blobs/$img->{layers}[0]");
    is($r->{status}, 401, 'blob HEAD without a token: 401');

    $r = with(undef, 'POST', '/v2/lib/app/blobs/uploads/');
    refused('push without a token', $r, '', 'repository:lib/app:pull,push',
            undef);

    $r = with(undef, 'DELETE', "/v2/lib/app/manifests/$img->{digest}");
    refused('delete without a token', $r, '', 'repository:lib/app:delete',
            undef);

    $r = with(undef, 'GET', '/v2/_catalog');
    refused('catalog without a token', $r, '', 'registry:catalog:*', undef);

    $r = with(undef, 'POST', "/v2/lib/new/blobs/uploads/?mount="
              . "$img->{layers}[0]&from=lib/app");
    refused('mount without a token', $r, '',
            'repository:lib/new:pull,push repository:lib/app:pull', undef);

    $r = $t->req('GET', $MANIFEST,
                 headers => { Authorization => 'Basic YWxpY2U6c2VjcmV0' });
    refused('Basic credentials', $r, '', 'repository:lib/app:pull', undef);

    $r = with(undef, 'GET', '/v2/lib/app/tags/list');
    refused('tags without a token', $r, '', 'repository:lib/app:pull', undef);
}

###############################################################################
# the attack catalogue

my $pull = 'repository:lib/app:pull';

sub attack {
    my ($name, $token, $why, %o) = @_;
    my ($r, $log) = logged(sub {
        with($token, $o{method} || 'GET', $o{path} || $MANIFEST)
    });
    refused($name, $r, $log, $o{scope} || $pull,
            $o{error} || 'invalid_token', $why);
}

my $good = tok();
is(with($good, 'GET', $MANIFEST)->{status}, 200, 'the good token pulls');

attack('alg none', JWT::token(alg => 'none', kid => JWT::libtrust($k{p256}),
                               claims => JWT::claims(access => access($pull))),
       'refused: alg not allowed');

attack('HS256 signed with the RSA public key',
       JWT::token(alg => 'HS256', kid => JWT::libtrust($k{rsa}),
                  secret => RegTest::slurp($k{rsa}{pub}),
                  claims => JWT::claims(access => access($pull))),
       'refused: alg not allowed');

attack('HS256 signed with the EC public key, no kid',
       JWT::token(alg => 'HS256', secret => RegTest::slurp($k{p256}{pub}),
                  claims => JWT::claims(access => access($pull))),
       'refused: alg not allowed');

attack('RS256 token checked against an EC key',
       tok(key => $k{rsa}, alg => 'RS256', kid => JWT::libtrust($k{p256})),
       "refused: the kid's key cannot do this alg");

attack('ES384 token with a P-256 key',
       tok(key => $k{p256}, alg => 'ES384'),
       "refused: the kid's key cannot do this alg");

attack('embedded jwk', tok(key => $attacker, kid => undef,
                           header => { jwk => JWT::jwk($attacker) }),
       'refused: header has a refused member');

attack('jku', tok(key => $attacker, kid => undef,
                  header => { jku => 'https://evil.example/jwks' }),
       'refused: header has a refused member');

attack('jku beside a trusted kid',
       tok(header => { jku => 'https://evil.example/jwks' }),
       'refused: header has a refused member');

attack('x5u', tok(header => { x5u => 'https://evil.example/cert' }),
       'refused: header has a refused member');

attack('crit header', tok(header => { crit => ['exp'], exp => 1 }),
       'refused: header has a refused member');

attack('unknown kid', tok(key => $attacker),
       'refused: unknown kid');

attack('unknown key without kid', tok(key => $attacker, kid => undef),
       'refused: bad signature');

{
    my ($head, $payload, $sig) = split /\./, $good;
    my $raw = JWT::b64url_decode($sig);
    substr($raw, 10, 1) = chr(ord(substr($raw, 10, 1)) ^ 0x01);
    attack('flipped signature byte', "$head.$payload." . JWT::b64url($raw),
           'refused: bad signature');

    # the same claims under another signature's header: a changed token
    attack('payload of another token',
           "$head." . (split /\./, tok(scope => ['repository:lib/app:*']))[1]
           . ".$sig", 'refused: bad signature');
}

attack('expired beyond the leeway',
       tok(claims => { exp => time - 120, nbf => time - 600 }),
       'refused: expired');

is(with(tok(claims => { exp => time - 30, nbf => time - 600 }), 'GET',
        $MANIFEST)->{status},
   200, 'expired within the 60 s leeway: accepted');

attack('no exp', JWT::token(key => $k{p256}, alg => 'ES256',
                            kid => JWT::libtrust($k{p256}),
                            claims => { iss => $ISSUER, aud => $SERVICE,
                                        access => access($pull) }),
       'refused: no exp');

attack('nbf in the future', tok(claims => { nbf => time + 300 }),
       'refused: not valid yet');

is(with(tok(claims => { nbf => time + 30 }), 'GET', $MANIFEST)->{status},
   200, 'nbf within the leeway: accepted');

attack('wrong aud', tok(claims => { aud => 'another-registry' }),
       'refused: wrong aud');

attack('aud list without the service',
       tok(claims => { aud => ['a', 'b'] }), 'refused: wrong aud');

is(with(tok(claims => { aud => ['a', $SERVICE] }), 'GET', $MANIFEST)
       ->{status}, 200, 'aud list with the service: accepted');

attack('wrong iss', tok(claims => { iss => 'evil-issuer' }),
       'refused: wrong iss');

attack('no iss', tok(claims => { iss => undef }), 'refused: wrong iss');

attack('access for another repository',
       tok(scope => ['repository:lib/other:pull']),
       'the token of "alice" does not grant', error => 'insufficient_scope');

attack('access of another type',
       tok(scope => ['namespace:lib/app:pull']),
       'the token of "alice" does not grant', error => 'insufficient_scope');

attack('pull used to push', tok(scope => [$pull]),
       'the token of "alice" does not grant',
       method => 'POST', path => '/v2/lib/app/blobs/uploads/',
       scope => 'repository:lib/app:pull,push', error => 'insufficient_scope');

attack('push without pull', tok(scope => ['repository:lib/app:push']),
       'the token of "alice" does not grant',
       method => 'PUT', path => $MANIFEST,
       scope => 'repository:lib/app:pull,push', error => 'insufficient_scope');

attack('delete missing', tok(scope => ['repository:lib/app:pull,push']),
       'the token of "alice" does not grant',
       method => 'DELETE', path => "/v2/lib/app/manifests/$img->{digest}",
       scope => 'repository:lib/app:delete', error => 'insufficient_scope');

attack('catalog missing', tok(scope => ['repository:lib/app:*']),
       'the token of "alice" does not grant', path => '/v2/_catalog',
       scope => 'registry:catalog:*', error => 'insufficient_scope');

attack('catalog with a pull action only',
       tok(scope => ['registry:catalog:pull']),
       'the token of "alice" does not grant', path => '/v2/_catalog',
       scope => 'registry:catalog:*', error => 'insufficient_scope');

{
    my ($head, $payload, $sig) = split /\./, $good;

    attack('malformed base64url: "+"', ($head =~ s/^(.)/+/r)
           . ".$payload.$sig", 'refused: malformed base64url');

    attack('malformed base64url: padding', "$head.$payload.$sig=",
           'refused: malformed base64url');

    # the payload is read only once the signature verified
    attack('malformed base64url in the payload',
           "$head." . ($payload =~ s/^(.)/\//r) . ".$sig",
           'refused: bad signature');

    # a last digit with low bits set decodes to the same bytes, as
    # another spelling of the same token
    my $last = substr($sig, -1);
    my @digits = ('A' .. 'Z', 'a' .. 'z', '0' .. '9', '-', '_');
    my ($v) = grep { $digits[$_] eq $last } 0 .. 63;
    my $spare = length($sig) % 4 == 2 ? 0x0f : length($sig) % 4 == 3 ? 0x03 : 0;

    SKIP: {
        skip 'signature of a length without spare bits', 4 unless $spare;
        attack('malformed base64url: spare bits set',
               "$head.$payload." . substr($sig, 0, -1) . $digits[$v | 1],
               'refused: malformed base64url');
    }

    attack('not three parts', "$head.$payload", 'refused: not three parts');
    attack('four parts', "$good.$sig", 'refused: not three parts');
}

attack('9 KiB token',
       tok(claims => { pad => 'x' x (9 * 1024) }),
       'refused: larger than 8 KiB');

is(with(tok(claims => { pad => 'x' x 4096 }), 'GET', $MANIFEST)->{status},
   200, 'a 5 KiB token is accepted');

{
    my $now = time;
    my $claims = qq({"iss":"$ISSUER","aud":"$SERVICE","sub":"alice",)
        . qq("exp":@{[$now + 300]},"access":[{"type":"repository",)
        . qq("name":"lib/app","actions":["pull"]}]);

    attack('duplicated claims', JWT::token(key => $k{p256}, alg => 'ES256',
           claims_json => qq($claims,"sub":"admin"})),
           'refused: duplicated member');

    attack('duplicated aud', JWT::token(key => $k{p256}, alg => 'ES256',
           claims_json => qq($claims,"aud":"other"})),
           'refused: duplicated member');

    attack('duplicated header member', JWT::token(key => $k{p256},
           alg => 'ES256', claims_json => "$claims}",
           header_json => '{"alg":"ES256","alg":"none"}'),
           'refused: duplicated member');

    attack('claims not an object', JWT::token(key => $k{p256}, alg => 'ES256',
           claims_json => '["lib/app"]'), 'refused: not a JSON object');

    attack('claims not JSON', JWT::token(key => $k{p256}, alg => 'ES256',
           claims_json => "$claims"), 'refused: invalid JSON');

    attack('malformed access claim', JWT::token(key => $k{p256},
           alg => 'ES256', claims_json => qq({"iss":"$ISSUER",)
           . qq("aud":"$SERVICE","exp":@{[$now + 300]},)
           . qq("access":[{"type":"repository","name":"lib/app",)
           . qq("actions":"pull"}]})), 'refused: malformed access claim');

    is(with(JWT::token(key => $k{p256}, alg => 'ES256',
                       claims_json => "$claims}"), 'GET', $MANIFEST)->{status},
       200, 'the same claims without duplicates: accepted');
}

attack('refresh token typ', tok(header => { typ => 'refresh+jwt' }),
       'refused: wrong typ');

attack('sub not a string', tok(claims => { sub => 42 }),
       'refused: sub is not a string');

###############################################################################
# every algorithm, with the key it belongs to; kid in both forms; no kid

for my $case (['RS256', 'rsa'], ['RS384', 'rsa'], ['RS512', 'rsa'],
              ['PS256', 'rsa'], ['ES256', 'p256'], ['ES384', 'p384'],
              ['ES512', 'p521'], ['EdDSA', 'ed25519'])
{
    my ($alg, $key) = @$case;
    my $kk = $k{$key};

    is(with(tok(key => $kk, alg => $alg), 'GET', $MANIFEST)->{status}, 200,
       "$alg: kid in libtrust form");
    is(with(tok(key => $kk, alg => $alg, kid => JWT::thumbprint($kk)), 'GET',
            $MANIFEST)->{status}, 200, "$alg: kid as RFC 7638 thumbprint");
    is(with(tok(key => $kk, alg => $alg, kid => undef), 'GET',
            $MANIFEST)->{status}, 200, "$alg: no kid");
}

attack('RS256 with the RSA key under the P-384 kid',
       tok(key => $k{rsa}, alg => 'RS256', kid => JWT::libtrust($k{p384})),
       "refused: the kid's key cannot do this alg");

attack('EdDSA with an RSA kid',
       tok(key => $k{ed25519}, alg => 'EdDSA', kid => JWT::libtrust($k{rsa})),
       "refused: the kid's key cannot do this alg");

###############################################################################
# key files: JWKS (own kids, alg binding) and certificates

is(with(tok(key => $jwks_ec, kid => 'ec-by-name'), 'GET', $MANIFEST)
       ->{status}, 200, 'JWKS: EC key by its kid');
is(with(tok(key => $jwks_ec, kid => JWT::thumbprint($jwks_ec)), 'GET',
        $MANIFEST)->{status}, 200, 'JWKS: EC key by thumbprint');
is(with(tok(key => $jwks_rsa, alg => 'RS256', kid => 'rsa-by-name'), 'GET',
        $MANIFEST)->{status}, 200, 'JWKS: RSA key by its kid');
is(with(tok(key => $jwks_rsa, alg => 'PS256', kid => JWT::libtrust($jwks_rsa)),
        'GET', $MANIFEST)->{status}, 200, 'JWKS: RSA key by libtrust kid');

is(with(tok(key => $root), 'GET', $MANIFEST)->{status}, 200,
   "certificate file: the certificate's key by kid");

###############################################################################
# x5c: the chain must end at a configured certificate

sub x5c {
    my (@certs) = @_;
    return [ map { MIME::Base64::encode_base64($_->{der}, '') } @certs ];
}

is(with(tok(key => $leaf, kid => undef, header => { x5c => x5c($leaf, $int) }),
        'GET', $MANIFEST)->{status}, 200,
   'x5c: leaf and intermediate to the configured root');

attack('x5c without the intermediate',
       tok(key => $leaf, kid => undef, header => { x5c => x5c($leaf) }),
       'refused: x5c chain does not verify');

attack('x5c of a rogue root',
       tok(key => $rogue_leaf, kid => undef,
           header => { x5c => x5c($rogue_leaf, $rogue) }),
       'refused: x5c chain does not verify');

attack('x5c chain, signed by another key',
       tok(key => $attacker, kid => undef,
           header => { x5c => x5c($leaf, $int) }),
       'refused: bad signature');

attack('x5c with a trusted kid beside it',
       tok(key => $k{p256}, header => { x5c => x5c($rogue_leaf) }),
       'refused: x5c chain does not verify');

attack('x5c not a list', tok(key => $leaf, kid => undef,
                             header => { x5c => 'MIIB' }),
       'refused: malformed x5c');

###############################################################################
# the cache: 50 requests with one token, one signature verified

{
    my $token = tok(claims => { sub => 'cache-user' });
    my $log_before = length $t->error_log;
    my $ok = 0;

    for (1 .. 50) {
        $ok++ if with($token, 'GET', "/v2/lib/app/blobs/$img->{layers}[0]")
                 ->{status} == 200;
    }

    is($ok, 50, 'cache: 50 pulls with one token');

    my @verified = substr($t->error_log, $log_before)
                   =~ /registry token: verified a token of "cache-user"/g;
    is(scalar @verified, 1, 'cache: one signature verified for 50 requests');

    # a token that differs in one byte is another token: verified again
    my $again = tok(claims => { sub => 'cache-user', jti => 'other' });
    $log_before = length $t->error_log;
    with($again, 'GET', $MANIFEST);
    with($again, 'GET', $MANIFEST);
    @verified = substr($t->error_log, $log_before)
                =~ /registry token: verified a token of "cache-user"/g;
    is(scalar @verified, 1, 'cache: a new token is verified once');

    # a cached token still grants only what it grants
    my ($r, $log) = logged(sub {
        with($token, 'POST', '/v2/lib/app/blobs/uploads/')
    });
    refused('cached token used to push', $r, $log,
            'repository:lib/app:pull,push', 'insufficient_scope',
            'the token of "cache-user" does not grant');
}

###############################################################################
# requests through the registry with tokens

{
    my $push = tok(scope => ['repository:team/img:pull,push']);
    my $blob = "layer bytes " . rand();
    my $d = RegTest::digest($blob);

    my $r = $t->req('POST', "/v2/team/img/blobs/uploads/?digest=$d",
                    headers => { Authorization => "Bearer $push",
                                 'Content-Type' => 'application/octet-stream' },
                    content => $blob);
    is($r->{status}, 201, 'push: monolithic upload with a push token');

    my $config = '{"architecture":"amd64","os":"linux"}';
    my $cd = RegTest::digest($config);
    $r = $t->req('POST', '/v2/team/img/blobs/uploads/',
                 headers => { Authorization => "Bearer $push" });
    is($r->{status}, 202, 'push: a session opened');

    my $loc = $r->{headers}{location};
    $r = $t->req('PATCH', $loc, headers => { Authorization => "Bearer $push",
                                             'Content-Type' =>
                                                 'application/octet-stream' },
                 content => $config);
    is($r->{status}, 202, 'push: PATCH with the token');

    $r = $t->req('PUT', "$r->{headers}{location}"
                 . ($r->{headers}{location} =~ /\?/ ? '&' : '?') . "digest=$cd",
                 headers => { Authorization => "Bearer $push" });
    is($r->{status}, 201, 'push: PUT closes the session');

    my $manifest = JSON::PP->new->canonical->encode({
        schemaVersion => 2,
        mediaType => 'application/vnd.oci.image.manifest.v1+json',
        config => { mediaType => 'application/vnd.oci.image.config.v1+json',
                    digest => $cd, size => length $config },
        layers => [ { mediaType => 'application/vnd.oci.image.layer.v1.tar',
                      digest => $d, size => length $blob } ],
    });

    $r = $t->req('PUT', '/v2/team/img/manifests/v1',
                 headers => { Authorization => "Bearer $push",
                              'Content-Type' =>
                                  'application/vnd.oci.image.manifest.v1+json' },
                 content => $manifest);
    is($r->{status}, 201, 'push: manifest PUT with the token');

    my $pull_only = tok(scope => ['repository:team/img:pull']);
    $r = $t->req('GET', "/v2/team/img/blobs/$d",
                 headers => { Authorization => "Bearer $pull_only" });
    is($r->{status}, 200, 'pull: the blob with a pull token');
    is($r->{content}, $blob, 'pull: its bytes');

    $r = $t->req('GET', '/v2/team/img/tags/list',
                 headers => { Authorization => "Bearer $pull_only" });
    is($r->{status}, 200, 'pull: tags/list with a pull token');

    # a mount needs pull on "from" and push on the target
    my $mount = "/v2/team/copy/blobs/uploads/?mount=$d&from=team/img";

    $r = with(tok(scope => ['repository:team/copy:pull,push']), 'POST', $mount);
    is($r->{status}, 401, 'mount: push on the target alone is not enough');
    is($r->{headers}{'www-authenticate'},
       challenge('repository:team/copy:pull,push repository:team/img:pull',
                 'insufficient_scope'),
       'mount: the challenge names both repositories');

    $r = with(tok(scope => ['repository:team/copy:pull,push',
                            'repository:team/img:pull']), 'POST', $mount);
    is($r->{status}, 201, 'mount: with both scopes');

    $r = with(tok(scope => ['repository:team/copy:pull,push repository:x:y']),
              'POST', $mount);
    is($r->{status}, 401, 'mount: an unknown scope grants nothing');

    # "*" is every action on the repository
    $r = with(tok(scope => ['repository:team/img:*']), 'DELETE',
              "/v2/team/img/manifests/v1");
    is($r->{status}, 202, 'delete: with "*"');

    $r = with(tok(scope => ['repository(plugin):lib/app:pull']), 'GET',
              $MANIFEST);
    is($r->{status}, 200, 'a resource class is ignored, as distribution does');

    $r = with(tok(scope => ['registry:catalog:*']), 'GET', '/v2/_catalog');
    is($r->{status}, 200, 'catalog: with registry:catalog:*');
    like($r->{content}, qr{"lib/app"}, 'catalog: lists the repositories');

    $r = with(tok(scope => []), 'GET', '/v2/');
    is($r->{status}, 200, '/v2/: any valid token');
    is($r->{content}, '{}', '/v2/: the answer');

    $r = with(tok(scope => [], claims => { sub => '' }), 'GET', '/v2/');
    is($r->{status}, 200, '/v2/: an anonymous token too');
}

$t->stop;

###############################################################################
# configuration errors: at nginx -t, not at the first request

sub refused_conf {
    my ($name, $extra, $want) = @_;

    my $d = tempdir('conf-XXXXXXXX', DIR => $dir);
    RegTest::spew("$d/nginx.conf", <<"EOF");
load_module $RegTest::MODULE;
error_log $d/error.log;
pid $d/nginx.pid;
events {
}
http {
    server {
        listen 127.0.0.1:1;
        location /v2/ {
            registry on;
            registry_root $d/store;
            $extra
        }
    }
}
EOF

    my ($rc, $out) = run_cmd([$RegTest::NGINX, '-t', '-p', "$d/", '-c',
                              "$d/nginx.conf", '-e', "$d/error.log"],
                             env => { RegTest::nginx_env($d) });

    isnt($rc, 0, "$name: nginx -t fails");
    like($out, $want, "$name: says why");
}

my $base = "registry_token_realm $REALM; registry_token_service $SERVICE; "
           . "registry_token_issuer $ISSUER;";

refused_conf('a private key', "$base registry_token_keys $k{p256}{key};",
             qr/holds a private key/);

my $small = JWT::genkey($dir, 'small', 'rsa1024');
refused_conf('RSA of 1024 bits', "$base registry_token_keys $small->{pub};",
             qr/2048 bits or more/);

refused_conf('no issuer', "registry_token_realm $REALM; "
             . "registry_token_service $SERVICE; "
             . "registry_token_keys $k{p256}{pub};",
             qr/needs "registry_token_service", "registry_token_issuer"/);

refused_conf('a missing file', "$base registry_token_keys $dir/nothing.pem;",
             qr/cannot be opened/);

RegTest::spew("$dir/bad.jwks", '{"keys":[{"kty":"EC","crv":"P-256",'
              . '"x":"AAAA","y":"AAAA"}]}');
refused_conf('a JWKS with a bad key', "$base registry_token_keys $dir/bad.jwks;",
             qr/holds a JWK that is not/);

RegTest::spew("$dir/alg.jwks", JSON::PP->new->encode({ keys => [
    { %{ JWT::jwk($jwks_ec) }, alg => 'RS256' } ] }));
refused_conf('a JWKS key with an alg it cannot do',
             "$base registry_token_keys $dir/alg.jwks;",
             qr/whose "alg" its key cannot do/);

refused_conf('a quote in the realm',
             'registry_token_realm "http://x/\"token"; '
             . "registry_token_service $SERVICE; registry_token_issuer $ISSUER;"
             . " registry_token_keys $k{p256}{pub};",
             qr/without quotes/);

done_testing();
