// jstat ships no types; this declares the one function svctrace uses.
declare module "jstat" {
  const jstat: {
    jStat: { chisquare: { cdf(x: number, dof: number): number } };
  };
  export default jstat;
}
