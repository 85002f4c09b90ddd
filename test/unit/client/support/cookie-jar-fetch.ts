/** What a browser does with the refresh cookie: keeps it from Set-Cookie, sends it with `credentials: "include"`. */
export class CookieJarFetch {
  /** The refresh cookie's value as the browser holds it (page scripts never see it). */
  value: string | undefined;

  constructor(
    private readonly inner: (request: Request) => Promise<Response>,
    private readonly name = "__Secure-sa-refresh",
  ) {}

  readonly fetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const request = new Request(input, init);
    if (request.credentials === "include" && this.value) request.headers.set("cookie", `${this.name}=${this.value}`);
    const response = await this.inner(request);
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(";").map((p) => p.trim());
      const [name, value] = pair!.split("=");
      if (name !== this.name) continue;
      this.value = attributes.some((a) => a.toLowerCase() === "max-age=0") || !value ? undefined : value;
    }
    return response;
  };
}
