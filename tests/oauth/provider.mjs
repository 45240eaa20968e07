// A real OAuth 2.0 authorization server for the tests: panva's oidc-provider
// (installed outside the repository, see tests/oauth_support.py), with the
// device flow, PKCE-checked authorization codes, rotating refresh tokens,
// introspection and revocation. Its own development login and consent pages
// stand in for the provider's sign-in; any login name is accepted as the
// account. Prints "ready <port>" once it listens.
import { pathToFileURL } from 'node:url';

const { default: Provider } = await import(
  pathToFileURL(process.env.OIDC_PROVIDER_MODULE).href);

const port = Number(process.env.PORT);
const accessTtl = Number(process.env.ACCESS_TTL || 3600);
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      // The mail client: public (no secret), a native app with a loopback redirect.
      client_id: 'mikotui',
      token_endpoint_auth_method: 'none',
      application_type: 'native',
      grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'authorization_code',
        'refresh_token'],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1/'],
    },
    {
      // The mail server: it only asks whether a token is good (introspection).
      client_id: 'smtp-server',
      client_secret: 'smtp-server-secret',
      grant_types: [],
      response_types: [],
      redirect_uris: [],
    },
  ],
  scopes: ['openid', 'offline_access', 'smtp.send'],
  features: {
    deviceFlow: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    devInteractions: { enabled: true },
  },
  ttl: {
    AccessToken: accessTtl,
    DeviceCode: 600,
    RefreshToken: 14 * 24 * 3600,
    Grant: 14 * 24 * 3600,
    Session: 3600,
    Interaction: 600,
  },
  // Every refresh hands out a new refresh token and retires the old one: the
  // hardest case for a client that must never keep the older of the two.
  rotateRefreshToken: true,
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  // What the dev consent page grants is exactly what was asked for.
  loadExistingGrant: async (ctx) => {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session?.grantIdFor(ctx.oidc.client.clientId);
    return grantId ? ctx.oidc.provider.Grant.find(grantId) : undefined;
  },
});
provider.proxy = false;

provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(`ready ${port}\n`);
});
