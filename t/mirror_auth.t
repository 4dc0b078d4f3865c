#!/usr/bin/perl

# The pull-through cache against upstreams as they are met:
# - behind Docker token authentication (this module's issuer and a
#   registry trusting it): 401 with a Bearer challenge, a token fetched
#   with the mirror's registry_upstream_credentials, one retry; the token
#   kept for the next pulls; without credentials nothing is served;
# - CNCF distribution (docker-registry) as the upstream, pulled through
#   the mirror by skopeo, then again with distribution stopped; and
#   distribution serves what the mirror stored.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);

use lib 't/lib';
use RegTest;
use RegTools qw(skopeo_ok build_oci_image start_distribution
                stop_distribution);
use MirrorTest;
use JWT;

sub hits { MirrorTest::upstream_hits(@_) }

my $dir = tempdir('mirror-auth-XXXXXXXX', TMPDIR => 1,
                  CLEANUP => !$ENV{REGTEST_LEAVE});

###############################################################################
# an upstream behind tokens

my $sign = JWT::genkey($dir, 'signing', 'p256');
my $apr1 = JWT::openssl('passwd', '-apr1', 'mirrorpass');
chomp $apr1;
RegTest::spew("$dir/htpasswd", "mirror:$apr1\n");

my $auth = RegTest->new(server_extra => <<"EOF");
        location = /token {
            registry_token_server on;
            registry_token_signing_key $sign->{key};
            registry_token_issuer test-issuer;
            registry_token_service test-registry;
            registry_token_users $dir/htpasswd;
            registry_access mirror ** pull;
        }
EOF

my $store = "$dir/store";
my $open = RegTest->new(root => $store);
my $img = $open->push_image('lib/app', 'v1',
                            layers => ['private layer ' . rand()]);
$open->stop;

my $realm = 'http://127.0.0.1:' . $auth->port . '/token';

my $up = RegTest->new(root => $store, location_extra => <<"EOF");
            registry_token_realm $realm;
            registry_token_service test-registry;
            registry_token_issuer test-issuer;
            registry_token_keys $sign->{pub};
EOF

is($up->req('GET', "/v2/lib/app/manifests/v1")->{status}, 401,
   'the upstream wants a token');

RegTest::spew("$dir/creds", "mirror:mirrorpass\n");
my $url = 'http://127.0.0.1:' . $up->port;

my $m = MirrorTest::mirror($url, location_extra =>
                           "registry_upstream_credentials up $dir/creds;\n");

my $r = $m->req('GET', '/v2/up/lib/app/manifests/v1');
is($r->{status}, 200, 'manifest through the token dance');
is($r->{content}, $img->{manifest}, 'its bytes');
is(hits($auth, qr{ - mirror \[.*"GET /token\?service=test-registry&scope=repository:lib/app:pull }),
   1, 'one token request, as the mirror\'s user, with the challenge\'s '
      . 'service and scope');
is(hits($up, qr{"GET /v2/lib/app/manifests/v1 [^"]*" 401 }), 2,
   'one 401 first (and the test\'s own)');

$r = $m->req('GET', "/v2/up/lib/app/blobs/$img->{layers}[0]");
is($r->{status}, 200, 'blob with the token');
is(RegTest::digest($r->{content}), $img->{layers}[0], 'its bytes');
$r = $m->req('GET', "/v2/up/lib/app/blobs/$img->{config}");
is(RegTest::digest($r->{content}), $img->{config}, 'the config blob');
is(hits($auth, qr{"GET /token}), 1, 'the token was kept for them');
is(hits($up, qr{" 401 }), 2, 'no other 401 (one was the test\'s own)');
$m->stop;

# without credentials: an anonymous token grants nothing here

$m = MirrorTest::mirror($url);
RegTest::check_error($m->req('GET', '/v2/up/lib/app/manifests/v1'), 503,
                     'UNAVAILABLE', 'no credentials');
$m->stop;
$up->stop;
$auth->stop;

###############################################################################
# distribution as the upstream, skopeo through the mirror

SKIP: {
    my @missing = grep { my $t = $_; !grep { -x "$_/$t" } split /:/, $ENV{PATH} }
                  qw(skopeo umoci docker-registry);
    skip "needs @missing", 8 if @missing;

    my $dist = start_distribution("$dir/dist");
    my $oci = build_oci_image("$dir/layout", 'v1');

    skopeo_ok('push to distribution', 'copy', '--dest-tls-verify=false',
              "oci:$dir/layout:v1",
              "docker://127.0.0.1:$dist->{port}/team/img:v1");

    $m = MirrorTest::mirror($dist->{url}, ttl => '1s');
    my $mp = $m->port;

    skopeo_ok('pull through the mirror', 'copy', '--src-tls-verify=false',
              "docker://127.0.0.1:$mp/up/team/img:v1", "oci:$dir/out:v1");
    like(RegTest::slurp("$dir/out/index.json"), qr/\Q$oci->{digest}\E/,
         'the same manifest digest');

    stop_distribution($dist);
    sleep 2;

    skopeo_ok('pull again, distribution stopped', 'copy',
              '--src-tls-verify=false',
              "docker://127.0.0.1:$mp/up/team/img:v1", "oci:$dir/out2:v1");
    like(RegTest::slurp("$dir/out2/index.json"), qr/\Q$oci->{digest}\E/,
         'from the cache');
    like($m->error_log, qr/the cached manifest is served/,
         'as a stale tag');

    # what the mirror kept, distribution itself serves
    my $d2 = start_distribution($m->root);
    skopeo_ok('distribution serves the mirror\'s store', 'copy',
              '--src-tls-verify=false',
              "docker://127.0.0.1:$d2->{port}/up/team/img:v1",
              "oci:$dir/out3:v1");
    stop_distribution($d2);
    $m->stop;
}

done_testing();
